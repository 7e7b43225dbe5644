"""The article's vanilla autoencoder: 784 → 64 relu → 784 sigmoid, MSE, Adam.

Launch:
    python -m experiments.main --config experiments/configs/vanilla.py \
        --workdir runs/vanilla --config.data_dir=<MNIST folder>

Expect on full MNIST: test MSE 0.00402 after 5 epochs (the target: ≤ 0.0050).
With --config.sweep=seed=0:5: 0.00404 ± 0.00003 over the 5 seeds; a searched recipe
(experiments.search) reaches 0.00364 ± 0.00004 in the same 5 epochs.
Results, the Keras recipe (``:keras``) and history: docs/results/vanilla.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config()
  config.name = "vanilla"
  return base.apply_recipe(config, recipe)
