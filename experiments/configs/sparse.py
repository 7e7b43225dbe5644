"""The article's sparse autoencoder: 784 → 32 relu → 784 with an L1 penalty, λ = 1e-4.

Launch:
    python -m experiments.main --config experiments/configs/sparse.py \
        --workdir runs/sparse --config.data_dir=<MNIST folder>

Expect on full MNIST: test MSE 0.00959, mean |code| 1.51 after 15 epochs (the target:
≤ 0.0099).
With --config.sweep=seed=0:5: 0.00968 ± 0.00015 over the 5 seeds.
Results, the Keras recipe (``:keras``) and history: docs/results/sparse.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config()
  config.name = "sparse"
  config.model.code_size = 32
  config.num_epochs = 15
  # BCE, not MSE: MSE + L1 stalled above 0.0100 (docs/results/sparse.md).
  config.losses = "bce=1, l1_activity=1e-4"
  config.learning_rate = 1e-2
  config.warmup_epochs = 1.0
  config.final_lr_fraction = 0.0
  return base.apply_recipe(config, recipe)
