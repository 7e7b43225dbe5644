"""The VQ-VAE (van den Oord et al. 2017): a 7×7 grid of K = 512 EMA-codebook entries.

Launch:
    python -m experiments.main --config experiments/configs/vqvae.py \
        --workdir runs/vqvae --config.data_dir=path/to/mnist

Expect on full MNIST: 25.19 dB PSNR at 441 bits per image after 2 epochs.
Results and history: docs/results/vqvae.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("vqvae")
  config.name = "vqvae"
  config.losses = "mse=1, commitment=0.25"
  config.num_epochs = 2
  config.learning_rate = 2e-3
  # One chunk per batch: chunks would each reset dead codes (docs/results/vqvae.md).
  config.microbatch_size = config.get_ref("batch_size")
  return base.apply_recipe(config, recipe)
