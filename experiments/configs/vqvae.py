"""The VQ-VAE (van den Oord et al. 2017): 28×28 → 7×7 grid of 16-dim vectors, each one
of K = 512 EMA-codebook entries (441 bits per image), MSE + 0.25 × commitment
(``aejax/models/vqvae.py``).

Launch:
    python -m experiments.main --config experiments/configs/vqvae.py \
        --workdir runs/vqvae --config.data_dir=path/to/mnist

Reached on full MNIST (2 epochs, batch 128, 1017 s of training on one shared CPU
core): test MSE 0.00303, PSNR 25.19 dB, at 441 bits per image (49 positions × log2
512); 502 of the 512 codebook entries used on the test set, usage perplexity 220.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("vqvae")
  config.name = "vqvae"
  config.losses = "mse=1, commitment=0.25"
  config.num_epochs = 2
  config.learning_rate = 2e-3
  # The whole batch in one chunk, whatever --config.batch_size: chunks would each
  # reset dead codebook entries to their own random vectors, and the step keeps the
  # chunks' mean of the codebook.
  config.microbatch_size = config.get_ref("batch_size")
  return base.apply_recipe(config, recipe)
