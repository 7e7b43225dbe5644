"""A learned codec: Ballé et al.'s factorized prior (GDN transforms, a learned density
per channel), trained for D + λ·R and entropy-coded into real bytes.

Launch (λ = 0.05 squared error per bit; ``codec.py:hyperprior``: Ballé et al. 2018's
scale hyperprior instead; the sweep runs the factorized prior at five other λ):
    python -m experiments.main --config experiments/configs/codec.py \
        --workdir runs/codec --config.data_dir=path/to/mnist

Expect on full MNIST after 2 epochs: 34.6 bytes per image (real range-coded strings)
at 20.46 dB, results.json's model_eval; ``:hyperprior`` 24.6 bytes at 22.15 dB, and
its six λ as one 6-epoch sweep run 12.3 bytes at 18.19 dB to 124.3 at 31.15 dB.
Results, coding a PNG: docs/results/codec.md; against JPEG: docs/results/compression.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("factorized_prior")
  config.name = "codec"
  config.losses = "sse=1, rate=0.05"  # D + λ R, λ in squared error per bit
  config.num_epochs = 2
  config.learning_rate = 3e-3
  # 3×3 rather than Ballé's 5×5, a density that starts 1 wide rather than 10, and the
  # decoder trained on rounded latents: on a shared 2-core CPU two epochs are what a
  # sweep of λ can afford, and Ballé's start spends them narrowing the density
  # (docs/results/codec.md).
  config.model.kernel_size = 3
  config.model.density_init_scale = 1.0
  config.model.quantization = "mixed"
  if recipe == "hyperprior":  # Ballé et al. 2018's scale hyperprior, same λ and epochs
    config.name = "codec_hyperprior"
    config.model.prior = "hyperprior"
    return config
  return base.apply_recipe(config, recipe)
