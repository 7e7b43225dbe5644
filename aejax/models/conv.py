"""The article's convolutional autoencoder and its variants.

Encoder: (Conv 3×3 relu, 2×2 max-pool) per entry of ``features``; decoder: (Conv 3×3
relu, 2× nearest upsampling) per entry, reversed, then a 3×3 sigmoid conv to the
image's channels. ``features=(32, 32)`` is the article's net: 28×28×1 → 7×7×32 code.

Config block (``config.model``): ``features``, ``init``, ``output_bias``,
``compute_dtype``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax.models import layers, registry


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2×2 max-pooling with stride 2 as a reshape and a max: [B, H, W, C] -> [B, H/2, W/2, C].

  The same values as ``nn.max_pool(x, (2, 2), strides=(2, 2))``, but its gradient is
  a plain broadcast rather than XLA's select-and-scatter, which made the whole conv
  train step about 1.8× slower on XLA:CPU (measured: batch 128, 28×28, the article's
  net). Where a window holds tied maxima the gradient is shared among them.
  """
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class ConvEncoder(nn.Module):
  """(Conv 3×3 relu, 2×2 max-pool) per entry of ``features``: [B,H,W,C] -> [B,H/4,W/4,F]."""

  features: Sequence[int] = (32, 32)
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for f in self.features:
      x = nn.relu(nn.Conv(f, (3, 3), padding="SAME", kernel_init=self.kernel_init,
                          dtype=self.dtype)(x))
      x = max_pool_2x2(x)
    return x


class ConvDecoder(nn.Module):
  """(Conv 3×3 relu, 2× nearest upsampling) per entry of ``features``, then a 3×3
  sigmoid conv to the image's channels (Keras ``UpSampling2D`` is nearest)."""

  features: Sequence[int] = (32, 32)
  channels: int = 1
  kernel_init: Callable = nn.initializers.lecun_normal()
  output_bias_init: Callable = nn.initializers.zeros
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, code: jax.Array) -> jax.Array:
    x = code
    for f in self.features:
      x = nn.relu(nn.Conv(f, (3, 3), padding="SAME", kernel_init=self.kernel_init,
                          dtype=self.dtype)(x))
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    x = nn.Conv(self.channels, (3, 3), padding="SAME", kernel_init=self.kernel_init,
                bias_init=self.output_bias_init, dtype=self.dtype)(x)
    return nn.sigmoid(x.astype(jnp.float32))


def build(config, image_shape, pixel_mean) -> layers.Autoencoder:
  init = layers.INITIALIZERS[config.init]()
  dtype = layers.compute_dtype(config)
  features = tuple(config.features)
  encoder = ConvEncoder(features=features, kernel_init=init, dtype=dtype)
  decoder = ConvDecoder(features=features[::-1], channels=image_shape[-1], kernel_init=init,
                        output_bias_init=layers.output_bias_init(config, pixel_mean, True),
                        dtype=dtype)
  return layers.Autoencoder(encoder=encoder, decoder=decoder)


def check(config, image_shape) -> None:
  layers.check_common(config)
  layers.check_positive_ints(config, "features", allow_empty=False)
  layers.check_halvings(image_shape, len(config.features), "The conv autoencoder pools")


registry.register(registry.Family(
    name="conv",
    # He initialisation, made for relu nets; with glorot-uniform every relu of the
    # article's net died within the first epoch in some of our runs.
    defaults=dict(features=(32, 32), init="he_uniform", output_bias="data_mean",
                  compute_dtype="float32"),
    build=build, check=check,
    # On XLA:CPU a conv net inside any loop (scan) ran several times slower than one
    # jitted step per batch (`python -m experiments.benchmark --epoch_modes=step,scan`).
    cpu_epoch_mode="step", cpu_vmap_members=False))
