"""What the shipped families share: activations and initializers by name, the
encoder–decoder ``Autoencoder``, the mean-image output bias, common config checks."""

from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "linear": lambda x: x,
}

# Keras's Dense/Conv default is glorot_uniform; Flax's is lecun_normal.
INITIALIZERS = {
    "glorot_uniform": nn.initializers.glorot_uniform,
    "lecun_normal": nn.initializers.lecun_normal,
    "he_normal": nn.initializers.he_normal,
    "he_uniform": nn.initializers.he_uniform,
}

OUTPUT_BIAS = ("zeros", "data_mean")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


class Autoencoder(nn.Module):
  """``reconstruction = decode(encode(x))``; ``__call__`` returns
  ``{"reconstruction": [B, H, W, C], "code": [B, ...]}``."""

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def decode(self, code: jax.Array) -> jax.Array:
    return self.decoder(code)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    code = self.encode(x)
    return {"reconstruction": self.decode(code), "code": code}


def mean_logit_init(pixel_mean: np.ndarray | None, per_channel: bool) -> Callable:
  """The initializer of a sigmoid decoder's last bias: the logit of the training
  set's mean image (per pixel, or per channel for conv decoders); zeros without data.

  Started at 0.5 everywhere, the first steps' steepest way down is to drive every
  output towards black, which killed all the relus of the article's conv net in some
  of our runs (test MSE stuck at 0.11); from the mean image it trained every time.
  """
  if pixel_mean is None:
    return nn.initializers.zeros
  mean = (pixel_mean.reshape(-1, pixel_mean.shape[-1]).mean(0) if per_channel
          else pixel_mean.reshape(-1))
  mean = np.clip(mean, 1e-3, 1 - 1e-3)  # pixels that are always 0 get a finite logit
  logits = np.log(mean) - np.log1p(-mean)
  return lambda key, shape, dtype=jnp.float32: jnp.asarray(logits, dtype).reshape(shape)


def output_bias_init(model_config, pixel_mean: np.ndarray | None, per_channel: bool,
                     unbounded: bool = False):
  """'data_mean' (``mean_logit_init``; for a linear head, ``unbounded``, the mean
  itself) or Keras's 'zeros'."""
  if model_config.output_bias == "zeros" or (unbounded and pixel_mean is None):
    return nn.initializers.zeros
  if unbounded:
    mean = np.asarray(pixel_mean, np.float32).reshape(-1)
    return lambda key, shape, dtype=jnp.float32: jnp.asarray(mean, dtype).reshape(shape)
  return mean_logit_init(pixel_mean, per_channel)


def compute_dtype(model_config) -> jnp.dtype | None:
  return None if model_config.compute_dtype == "float32" else jnp.dtype(
      model_config.compute_dtype)


def check_choice(model_config, key: str, choices) -> None:
  if model_config[key] not in choices:
    raise ValueError(f"config.model.{key}={model_config[key]!r} is unknown; "
                     f"choose one of {sorted(choices)}.")


def check_common(model_config) -> None:
  """The keys every shipped family has: init, output_bias, compute_dtype."""
  check_choice(model_config, "init", INITIALIZERS)
  check_choice(model_config, "output_bias", OUTPUT_BIAS)
  check_choice(model_config, "compute_dtype", COMPUTE_DTYPES)


def check_positive_ints(model_config, key: str, allow_empty: bool = True) -> None:
  value = model_config[key]
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  if (not values and not allow_empty) or any(
      not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in values):
    what = "positive integers" if isinstance(value, (tuple, list)) else "a positive integer"
    raise ValueError(f"config.model.{key} must be {what}, got {value!r}.")


def flat_size(image_shape) -> int:
  return math.prod(image_shape)


def check_halvings(image_shape, halvings: int, what: str) -> None:
  """``image_shape``'s height and width must survive ``halvings`` halvings; ``what``
  names the model in the message (None: not known yet, nothing to check)."""
  factor = 2 ** halvings
  if image_shape is not None and (image_shape[0] % factor or image_shape[1] % factor):
    raise ValueError(
        f"{what} {halvings} times, so image height and width must be divisible by "
        f"{factor}; got {tuple(image_shape[:2])}.")
