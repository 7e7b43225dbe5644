"""The article's denoising autoencoder: the conv model fed gaussian-noised images
(noise factor 0.5, clipped to [0, 1]) and trained to output the clean image.

Launch:
    python -m experiments.main --config experiments/configs/denoising.py \
        --workdir runs/denoising --config.data_dir=<MNIST folder>

Reached on full MNIST (5 epochs, batch 128; ``bash scripts/train_all.sh``): on the
test images with fresh noise, PSNR 9.37 dB for the noisy input and 19.14 dB for the
denoised output (MSE 0.1156 → 0.0122); on clean inputs its reconstruction MSE is 0.00574.
"""

from experiments.configs import base, conv


def get_config(recipe=None):
  config = conv.get_config()
  config.name = "denoising"
  config.corruption.name = "gaussian"
  config.corruption.level = 0.5
  return base.apply_recipe(config, recipe)
