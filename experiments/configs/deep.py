"""Hinton & Salakhutdinov's (2006) 784-1000-500-250-30 autoencoder, AdamW, no RBMs.

Launch:
    python -m experiments.main --config experiments/configs/deep.py \
        --workdir runs/deep --config.data_dir=path/to/mnist

Expect on full MNIST after 100 epochs (about 16 min on a free 2-core CPU): 3.004 ±
0.011 squared error per test image over 5 seeds (--config.sweep=seed=0:5; 95%
interval 2.990-3.018), so their 3.00 is matched, not met. With
--config.num_epochs=150: 2.983 ± 0.013 (95% interval 2.967-2.999), met.
Results and every recipe tried: docs/results/deep.md.
"""

from experiments.configs import base


def get_config():
  config = base.get_config()
  config.name = "deep"
  config.model.hidden = (1000, 500, 250)
  config.model.code_size = 30
  config.model.code_activation = "linear"
  config.num_epochs = 100
  config.learning_rate = 2e-3
  config.warmup_epochs = 1.0
  config.weight_decay = 0.2
  return config
