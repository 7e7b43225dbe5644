"""The article's sparse autoencoder: 784 → 32 relu → 784, MSE + L1 activity on the code.

The L1 term has Keras's semantics: λ · Σ|code| per example, averaged over the batch,
with the article notebook's λ = 1e-4 on a 32-unit code, trained for 15 epochs.

Launch:
    python -m experiments.main --config experiments/configs/sparse.py \
        --workdir runs/sparse --config.data_dir=<MNIST folder>

Expected on full MNIST: test MSE RESULT_PENDING.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config()
  config.name = "sparse"
  config.model.code_size = 32
  config.losses = "mse=1, l1_activity=1e-4"
  config.num_epochs = 15
  return base.apply_recipe(config, recipe)
