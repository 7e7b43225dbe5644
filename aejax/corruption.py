"""Input corruptions: pure functions ``(key, x) -> x_corrupted``.

``x`` is a float array of images in [0, 1], any shape; the result has the same
shape and dtype and stays in [0, 1]. A denoising autoencoder sees the corrupted
image and is trained to reproduce the clean one.

``make(name, level)`` binds a corruption's strength so that the train step gets a
plain ``(key, x) -> x`` callable. ``level`` is the one knob each corruption has:
the noise factor (standard deviation) for ``gaussian``, the fraction of pixels hit
for ``masking`` and ``salt_and_pepper``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

Corruption = Callable[[jax.Array, jax.Array], jax.Array]


def gaussian(key: jax.Array, x: jax.Array, *, noise_factor: float) -> jax.Array:
  """Adds ``noise_factor * N(0, 1)`` to every pixel, then clips to [0, 1].

  The article's denoising setting is ``noise_factor=0.5``.
  """
  noise = jax.random.normal(key, x.shape, dtype=jnp.float32)
  return jnp.clip(x + noise_factor * noise, 0.0, 1.0).astype(x.dtype)


def masking(key: jax.Array, x: jax.Array, *, rate: float) -> jax.Array:
  """Sets each pixel to 0 with probability ``rate`` (masking noise, Vincent et al.)."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x, jnp.zeros_like(x))


def salt_and_pepper(key: jax.Array, x: jax.Array, *, rate: float) -> jax.Array:
  """Sets each pixel, with probability ``rate``, to 0 or 1 with equal odds."""
  hit_key, salt_key = jax.random.split(key)
  hit = jax.random.bernoulli(hit_key, rate, x.shape)
  salt = jax.random.bernoulli(salt_key, 0.5, x.shape).astype(x.dtype)
  return jnp.where(hit, salt, x)


def identity(key: jax.Array, x: jax.Array) -> jax.Array:
  del key
  return x


_KINDS = {
    "gaussian": (gaussian, "noise_factor"),
    "masking": (masking, "rate"),
    "salt_and_pepper": (salt_and_pepper, "rate"),
}
NAMES = ("none", *_KINDS)


def make(name: str, level: float = 0.0) -> Corruption:
  """Returns the corruption ``name`` with its strength bound to ``level``."""
  if name not in NAMES:
    raise ValueError(f"Unknown corruption {name!r}; choose one of {list(NAMES)}.")
  is_rate = name in ("masking", "salt_and_pepper")  # a fraction of pixels
  # A traced level (a sweep's member, inside the compiled step) was checked as a number.
  checkable = isinstance(level, (int, float))
  if checkable and (not 0.0 <= level or (is_rate and level > 1.0)):
    bound = "in [0, 1]" if is_rate else "≥ 0"
    raise ValueError(f"corruption.level for {name!r} must be {bound}, got {level}.")
  if name == "none":
    return identity
  fn, arg = _KINDS[name]
  return functools.partial(fn, **{arg: level})
