"""The article's vanilla autoencoder: 784 → 64 relu → 784 sigmoid, MSE, Adam.

Launch:
    python -m experiments.main --config experiments/configs/vanilla.py \
        --workdir runs/vanilla --config.data_dir=<MNIST folder>

Reached on full MNIST (5 epochs, batch 128; ``bash scripts/train_all.sh``):
test MSE 0.00402 with these defaults (decoder starting at the mean image, Adam with
warm-up and cosine decay from 3e-3); 0.00538 with ``vanilla.py:keras`` (the article's
Keras recipe; the article's notebook: 0.0055).
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config()
  config.name = "vanilla"
  return base.apply_recipe(config, recipe)
