"""The TopK sparse autoencoder (Gao et al. 2024): 784 → 1024 units, k = 32, AuxK.

Launch:
    python -m experiments.main --config experiments/configs/topk.py \
        --workdir runs/topk --config.data_dir=path/to/mnist

Expect on full MNIST: test MSE 0.00692, L0 32, 0.29% of units dead after 3 epochs
(the target: ≤ 1% dead).
With --config.sweep=seed=0:5: 0.00694 ± 0.00002, 0.29-0.68% dead, over 5 seeds.
Results, the sweep against L1 and history: docs/results/topk.md.
"""

from experiments.configs import base


# The AuxK loss term the config and the frontier sweep use (aejax/models/topk.py).
AUXK_TERM = "auxk_scaled"


def get_config(recipe=None):
  config = base.get_config("topk")
  config.name = "topk"
  config.model.width = 1024
  config.model.k = 32
  # Gao et al.'s AuxK weight, 1/32, on the scale-free AuxK (docs/results/topk.md).
  config.losses = f"mse=1, {AUXK_TERM}=0.03125"
  config.num_epochs = 3
  config.learning_rate = 1e-3
  return base.apply_recipe(config, recipe)
