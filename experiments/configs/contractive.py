"""The contractive autoencoder (Rifai et al. 2011): 784 → 64 sigmoid → 784, λ = 1e-3.

Launch:
    python -m experiments.main --config experiments/configs/contractive.py \
        --workdir runs/contractive --config.data_dir=path/to/mnist

Expect on full MNIST: test MSE 0.02209, mean ||J||²_F 3.29 after 2 epochs.
Results and history: docs/results/contractive.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("contractive")
  config.name = "contractive"
  config.model.code_size = 64
  config.model.code_activation = "sigmoid"
  config.losses = "mse=1, contractive=1e-3"
  config.num_epochs = 2
  return base.apply_recipe(config, recipe)
