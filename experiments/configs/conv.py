"""The article's convolutional autoencoder, exactly: 28×28×1 in and out.

Encoder: (Conv 32 3×3 relu, 2×2 max-pool) ×2 → a 7×7×32 code. Decoder: (Conv 32 3×3
relu, 2× upsampling) ×2, then Conv 1 3×3 sigmoid.

Launch:
    python -m experiments.main --config experiments/configs/conv.py \
        --workdir runs/conv --config.data_dir=<MNIST folder>

Expected on full MNIST (5 epochs, batch 128): test MSE RESULT_PENDING.
"""

from experiments.configs import base


def get_config():
  config = base.get_config()
  config.name = "conv"
  config.model.name = "conv"
  config.model.conv_features = (32, 32)
  return config
