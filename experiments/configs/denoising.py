"""The article's denoising autoencoder: the conv net, inputs with gaussian noise 0.5.

Launch:
    python -m experiments.main --config experiments/configs/denoising.py \
        --workdir runs/denoising --config.data_dir=<MNIST folder>

Expect on full MNIST: test PSNR 9.37 dB noisy → 19.14 dB denoised after 5 epochs
(the target: ≥ +8 dB); over 5 seeds (--config.sweep=seed=0:5) 19.16 ± 0.08 dB.
Results and history: docs/results/denoising.md.
"""

from experiments.configs import base, conv


def get_config(recipe=None):
  config = conv.get_config()
  config.name = "denoising"
  config.corruption.name = "gaussian"
  config.corruption.level = 0.5
  return base.apply_recipe(config, recipe)
