"""The article's denoising autoencoder: the conv model fed gaussian-noised images
(noise factor 0.5, clipped to [0, 1]) and trained to output the clean image.

Launch:
    python -m experiments.main --config experiments/configs/denoising.py \
        --workdir runs/denoising --config.data_dir=<MNIST folder>

Expected on full MNIST (5 epochs, batch 128): RESULT_PENDING.
"""

from experiments.configs import base, conv


def get_config(recipe=None):
  config = conv.get_config()
  config.name = "denoising"
  config.corruption.name = "gaussian"
  config.corruption.level = 0.5
  return base.apply_recipe(config, recipe)
