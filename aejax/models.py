"""Encoders, decoders and the Autoencoder that joins them (Flax Linen).

Why Linen rather than NNX: the training boundary here is functional anyway (the
train step maps a pytree of arrays to a pytree of arrays, under ``jit``, ``scan``
and later ``shard_map``), and Linen's ``init``/``apply`` gives exactly that with
no ``split``/``merge`` at the boundary: parameters are a plain nested dict that
optax, orbax and ``jax.sharding`` take as they are.

Shapes: images are ``[batch, height, width, channels]`` floats in [0, 1]; an
``Autoencoder`` returns ``(reconstruction, code)`` with the reconstruction in the
input's shape. Dense models flatten the image; the conv model keeps the grid.

``build(config, image_shape)`` is the one place a model is made from a config.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "sigmoid": nn.sigmoid,
    "linear": lambda x: x,
}

# Keras's Dense/Conv default is glorot_uniform; Flax's is lecun_normal.
_INITIALIZERS = {
    "glorot_uniform": nn.initializers.glorot_uniform,
    "lecun_normal": nn.initializers.lecun_normal,
    "he_normal": nn.initializers.he_normal,
    "he_uniform": nn.initializers.he_uniform,
}


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
      x = _ACTIVATIONS[self.code_activation](x) if last else nn.relu(x)
    return x


class MLPDecoder(nn.Module):
  """Dense relu layers, then a sigmoid Dense layer reshaped to the image."""

  widths: Sequence[int]
  image_shape: tuple[int, ...]
  kernel_init: Callable = nn.initializers.lecun_normal()
  output_bias_init: Callable = nn.initializers.zeros
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, code: jax.Array) -> jax.Array:  # [B, K] -> [B, *image_shape]
    x = code
    for width in self.widths:
      x = nn.relu(nn.Dense(width, kernel_init=self.kernel_init, dtype=self.dtype)(x))
    x = nn.Dense(math.prod(self.image_shape), kernel_init=self.kernel_init,
                 bias_init=self.output_bias_init, dtype=self.dtype)(x)
    return nn.sigmoid(x.astype(jnp.float32)).reshape(x.shape[0], *self.image_shape)


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


class Autoencoder(nn.Module):
  """``reconstruction = decode(encode(x))``; ``__call__`` returns both it and the code."""

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def decode(self, code: jax.Array) -> jax.Array:
    return self.decoder(code)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    code = self.encode(x)
    return self.decode(code), code


def largest_activation_bytes(model: nn.Module, image_shape: tuple[int, ...]) -> int:
  """Bytes of the largest output of any submodule, for one example (shapes only:
  nothing is computed)."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)

  def intermediates(x):
    variables = model.init(jax.random.key(0), x)
    return model.apply(variables, x, capture_intermediates=True,
                       mutable=["intermediates"])[1]

  return max(leaf.size * leaf.dtype.itemsize
             for leaf in jax.tree.leaves(jax.eval_shape(intermediates, x)))


MODELS = ("mlp", "conv")


OUTPUT_BIAS = ("zeros", "data_mean")


def output_bias_init(model_config, pixel_mean: np.ndarray | None) -> Callable:
  """The initializer of the decoder's last bias.

  'data_mean' starts the sigmoid output at the training set's mean image (per pixel
  for dense decoders, per channel for conv ones) instead of at 0.5 everywhere. From
  0.5 the first steps' steepest way down is to drive every output towards black,
  which killed all the relus of the article's conv net in some of our runs (test MSE
  stuck at 0.11); from the mean image it trained every time. 'zeros' is Keras's.
  ``pixel_mean``: [H, W, C] in [0, 1]; without it (restoring a checkpoint) zeros.
  """
  if model_config.get("output_bias", "zeros") == "zeros" or pixel_mean is None:
    return nn.initializers.zeros
  mean = pixel_mean.reshape(-1) if model_config.name == "mlp" else pixel_mean.reshape(
      -1, pixel_mean.shape[-1]).mean(0)
  mean = np.clip(mean, 1e-3, 1 - 1e-3)  # pixels that are always 0 get a finite logit
  logits = np.log(mean) - np.log1p(-mean)
  return lambda key, shape, dtype=jnp.float32: jnp.asarray(logits, dtype).reshape(shape)


def build(model_config, image_shape: tuple[int, int, int],
          pixel_mean: np.ndarray | None = None) -> Autoencoder:
  """Makes the Autoencoder a config's ``model`` block describes.

  ``model_config`` fields: ``name`` ('mlp' or 'conv'), ``hidden`` (encoder widths
  before the code, mirrored by the decoder), ``code_size``, ``code_activation``,
  ``conv_features``, ``init``, ``output_bias``, ``compute_dtype``. ``pixel_mean``
  (the training images' mean, [H, W, C] in [0, 1]) only sets the initial output bias.
  """
  validate(model_config, image_shape)
  init = _INITIALIZERS[model_config.init]()
  bias_init = output_bias_init(model_config, pixel_mean)
  dtype = None if model_config.compute_dtype == "float32" else jnp.dtype(
      model_config.compute_dtype)
  if model_config.name == "mlp":
    hidden = tuple(model_config.hidden)
    encoder = MLPEncoder(widths=(*hidden, model_config.code_size),
                         code_activation=model_config.code_activation,
                         kernel_init=init, dtype=dtype)
    decoder = MLPDecoder(widths=hidden[::-1], image_shape=tuple(image_shape),
                         kernel_init=init, output_bias_init=bias_init, dtype=dtype)
  else:
    features = tuple(model_config.conv_features)
    encoder = ConvEncoder(features=features, kernel_init=init, dtype=dtype)
    decoder = ConvDecoder(features=features[::-1], channels=image_shape[-1],
                          kernel_init=init, output_bias_init=bias_init, dtype=dtype)
  return Autoencoder(encoder=encoder, decoder=decoder)


def validate(model_config, image_shape: tuple[int, int, int] | None = None) -> None:
  """Raises ValueError, naming the config key, for anything ``build`` cannot make."""
  name = model_config.name
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r} is unknown; choose one of {list(MODELS)}.")
  if model_config.init not in _INITIALIZERS:
    raise ValueError(f"config.model.init={model_config.init!r} is unknown; "
                     f"choose one of {sorted(_INITIALIZERS)}.")
  if model_config.get("output_bias", "zeros") not in OUTPUT_BIAS:
    raise ValueError(f"config.model.output_bias={model_config.output_bias!r}; "
                     f"choose one of {list(OUTPUT_BIAS)}.")
  if model_config.compute_dtype not in ("float32", "bfloat16", "float16"):
    raise ValueError(f"config.model.compute_dtype={model_config.compute_dtype!r}: "
                     "use float32, bfloat16 or float16.")
  if name == "mlp":
    if model_config.code_size <= 0:
      raise ValueError(f"config.model.code_size must be > 0, got {model_config.code_size}.")
    if any(w <= 0 for w in model_config.hidden):
      raise ValueError(f"config.model.hidden widths must be > 0, got {model_config.hidden}.")
    if model_config.code_activation not in _ACTIVATIONS:
      raise ValueError(f"config.model.code_activation={model_config.code_activation!r}; "
                       f"choose one of {sorted(_ACTIVATIONS)}.")
  else:
    if not model_config.conv_features or any(f <= 0 for f in model_config.conv_features):
      raise ValueError("config.model.conv_features must be positive channel counts, "
                       f"got {model_config.conv_features}.")
    factor = 2 ** len(model_config.conv_features)
    if image_shape is not None and (image_shape[0] % factor or image_shape[1] % factor):
      raise ValueError(
          f"The conv autoencoder pools {len(model_config.conv_features)} times, so image "
          f"height and width must be divisible by {factor}; got {image_shape[:2]}.")
