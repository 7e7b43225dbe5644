"""Dense autoencoders: the article's vanilla (784-64-784), multilayer (784-128-64-128-784)
and sparse nets, and Hinton & Salakhutdinov's deep one.

Config block (``config.model``): ``hidden`` (encoder widths before the code, mirrored
by the decoder), ``code_size``, ``code_activation``, ``init`` (kernel initializer),
``output_bias`` ('data_mean' or Keras's 'zeros'), ``compute_dtype``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax.models import layers, registry


class MLPEncoder(nn.Module):
  """Flattens and applies Dense layers; the last one's output is the code.

  ``widths=(64,)`` is the article's vanilla encoder; ``(128, 64)`` its multilayer one.
  """

  widths: Sequence[int]
  code_activation: str = "relu"
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:  # [B, H, W, C] -> [B, widths[-1]]
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.widths):
      x = nn.Dense(width, kernel_init=self.kernel_init, dtype=self.dtype)(x)
      last = i == len(self.widths) - 1
      x = layers.ACTIVATIONS[self.code_activation](x) if last else nn.relu(x)
    return x


class MLPDecoder(nn.Module):
  """Dense relu layers, then a sigmoid Dense layer reshaped to the image (``linear``:
  no sigmoid, for data not in [0, 1])."""

  widths: Sequence[int]
  image_shape: tuple[int, ...]
  kernel_init: Callable = nn.initializers.lecun_normal()
  output_bias_init: Callable = nn.initializers.zeros
  dtype: jnp.dtype | None = None
  linear: bool = False

  @nn.compact
  def __call__(self, code: jax.Array) -> jax.Array:  # [B, K] -> [B, *image_shape]
    x = code
    for width in self.widths:
      x = nn.relu(nn.Dense(width, kernel_init=self.kernel_init, dtype=self.dtype)(x))
    x = nn.Dense(layers.flat_size(self.image_shape), kernel_init=self.kernel_init,
                 bias_init=self.output_bias_init, dtype=self.dtype)(x)
    x = x.astype(jnp.float32)
    return (x if self.linear else nn.sigmoid(x)).reshape(x.shape[0], *self.image_shape)


def build(config, image_shape, pixel_mean, unbounded: bool = False) -> layers.Autoencoder:
  init = layers.INITIALIZERS[config.init]()
  dtype = layers.compute_dtype(config)
  hidden = tuple(config.hidden)
  encoder = MLPEncoder(widths=(*hidden, config.code_size),
                       code_activation=config.code_activation, kernel_init=init, dtype=dtype)
  decoder = MLPDecoder(widths=hidden[::-1], image_shape=image_shape, kernel_init=init,
                       output_bias_init=layers.output_bias_init(config, pixel_mean, False,
                                                                unbounded),
                       dtype=dtype, linear=unbounded)
  return layers.Autoencoder(encoder=encoder, decoder=decoder)


def check(config, image_shape) -> None:
  layers.check_common(config)
  layers.check_positive_ints(config, "code_size")
  layers.check_positive_ints(config, "hidden")
  layers.check_choice(config, "code_activation", layers.ACTIVATIONS)


registry.register(registry.Family(
    name="mlp",
    defaults=dict(hidden=(), code_size=64, code_activation="relu", init="glorot_uniform",
                  output_bias="data_mean", compute_dtype="float32"),
    build=build, check=check, vectors=True, linear_head=True))
