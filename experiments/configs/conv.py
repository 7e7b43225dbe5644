"""The article's convolutional autoencoder: (conv 3×3, 2×2 pool) ×2 → a 7×7×32 code.

Launch:
    python -m experiments.main --config experiments/configs/conv.py \
        --workdir runs/conv --config.data_dir=<MNIST folder>

Expect on full MNIST after 5 epochs: test MSE 0.00235 (PSNR 26.3 dB); over 5 seeds
(--config.sweep=seed=0:5) 0.00227 ± 0.00009 (PSNR 26.44 ± 0.18 dB).
Results and history: docs/results/conv.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("conv")
  config.name = "conv"
  config.model.features = (32, 32)
  # He-uniform: with glorot-uniform every relu died (docs/results/conv.md).
  config.model.init = "he_uniform"
  return base.apply_recipe(config, recipe)
