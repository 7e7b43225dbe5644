"""The TopK sparse autoencoder (Gao et al. 2024): 784 → 1024 units, k = 32 active, with
the AuxK loss for dead units (``aejax/models/topk.py``).

Launch:
    python -m experiments.main --config experiments/configs/topk.py \
        --workdir runs/topk --config.data_dir=path/to/mnist

RESULTS_PLACEHOLDER
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("topk")
  config.name = "topk"
  config.model.width = 1024
  config.model.k = 32
  # Gao et al.'s AuxK weight, 1/32.
  config.losses = "mse=1, auxk=0.03125"
  config.num_epochs = 10
  config.learning_rate = 1e-3
  return base.apply_recipe(config, recipe)
