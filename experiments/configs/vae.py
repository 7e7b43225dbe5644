"""Burda et al.'s (2016) 784-200-200-50 tanh VAE on dynamically binarized MNIST.

Launch (``vae.py:iwae``: the k = 50 importance-weighted bound instead):
    python -m experiments.main --config experiments/configs/vae.py \
        --workdir runs/vae --config.data_dir=path/to/mnist

Expect on full MNIST: test NLL 86.26 nats after 1,787 epochs (the target: ≤ 87.0);
``:iwae`` reached 89.51 nats after 50 epochs (the target: ≤ 86.0).
Results, commands and history: docs/results/vae.md.
"""

from experiments.configs import base

RECIPES = ("", "iwae")


def get_config(recipe=None):
  config = base.get_config("vae")
  config.name = "vae"
  config.losses = "bernoulli_nll=1, kl_normal=1"
  config.batch_size = 100
  config.learning_rate = 1e-3
  config.schedule = "exponential"
  config.warmup_epochs = 0.0
  config.final_lr_fraction = 0.1
  config.num_epochs = 1787
  if (recipe or "") not in RECIPES:
    raise ValueError(f"Unknown recipe {recipe!r} after vae.py's colon; choose 'iwae' or none.")
  if recipe == "iwae":
    config.name = "iwae"
    config.losses = "iwae=1"
    config.model.num_samples = 50
  return config
