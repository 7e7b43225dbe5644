"""The article's multilayer autoencoder: 784-128-64-128-784, code = the 64-unit middle.

Launch:
    python -m experiments.main --config experiments/configs/multilayer.py \
        --workdir runs/multilayer --config.data_dir=<MNIST folder>

Expect on full MNIST: test MSE 0.00445 after 5 epochs (the target: ≤ 0.0060).
With --config.sweep=seed=0:5: 0.00443 ± 0.00009 over the 5 seeds.
Results, the Keras recipe (``:keras``) and history: docs/results/multilayer.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config()
  config.name = "multilayer"
  config.model.hidden = (128,)
  config.model.code_size = 64
  # A larger peak rate than vanilla's; the sweep: docs/results/multilayer.md.
  config.learning_rate = 1e-2
  return base.apply_recipe(config, recipe)
