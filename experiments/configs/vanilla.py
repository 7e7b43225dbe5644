"""The article's vanilla autoencoder: 784 → 64 relu → 784 sigmoid, MSE, Adam.

Launch:
    python -m experiments.main --config experiments/configs/vanilla.py \
        --workdir runs/vanilla --config.data_dir=<MNIST folder>

Expected on full MNIST (5 epochs, batch 128): test MSE RESULT_PENDING.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config()
  config.name = "vanilla"
  return base.apply_recipe(config, recipe)
