"""The contractive autoencoder (Rifai et al. 2011): 784 → 64 sigmoid → 784, MSE plus
λ ||∂ code / ∂ x||²_F with λ = 1e-3 (``aejax/models/contractive.py``).

Launch:
    python -m experiments.main --config experiments/configs/contractive.py \
        --workdir runs/contractive --config.data_dir=path/to/mnist

RESULTS_PLACEHOLDER
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("contractive")
  config.name = "contractive"
  config.model.code_size = 64
  config.model.code_activation = "sigmoid"
  config.losses = "mse=1, contractive=1e-3"
  config.num_epochs = 5
  return base.apply_recipe(config, recipe)
