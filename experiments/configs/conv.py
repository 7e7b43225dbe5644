"""The article's convolutional autoencoder, exactly: 28×28×1 in and out.

Encoder: (Conv 32 3×3 relu, 2×2 max-pool) ×2 → a 7×7×32 code. Decoder: (Conv 32 3×3
relu, 2× upsampling) ×2, then Conv 1 3×3 sigmoid.

Launch:
    python -m experiments.main --config experiments/configs/conv.py \
        --workdir runs/conv --config.data_dir=<MNIST folder>

Reached on full MNIST (5 epochs, batch 128; ``bash scripts/train_all.sh``):
test MSE 0.00235 (PSNR 26.3 dB) with these defaults: He-uniform kernels, the decoder
starting at the mean image, Adam with warm-up and cosine decay from 3e-3.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("conv")
  config.name = "conv"
  config.model.features = (32, 32)
  # He initialisation (the conv family's default), made for relu nets. With Keras's
  # glorot-uniform every relu of this net died within the first epoch in our runs (lr
  # 1e-3 constant, 1e-3 and 3e-3 cosine) and the output collapsed to black (test MSE
  # 0.114).
  config.model.init = "he_uniform"
  return base.apply_recipe(config, recipe)
