"""Loss terms: small pure functions of arrays that return one value per example.

Every term takes keyword arrays and returns shape ``[batch]``; the caller weights
and reduces (``objective.Objective`` sums ``weight * term.mean()`` over the terms a
config names). No term knows about a model: it reads named arrays from the model's
output dict (``reconstruction``, ``code``, a VAE's ``mean``...) and the batch
(``inputs``, what the encoder saw, and ``target``).

To add a term, write the function and ``register`` it with the names of the arrays it
reads (here, or in the file of the model family whose outputs it reads); a config can
then name it in ``config.losses``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


def _per_example(x: jax.Array) -> jax.Array:
  """Flattens all but the leading (batch) axis: [B, ...] -> [B, D]."""
  return x.reshape(x.shape[0], -1)


def mse(*, reconstruction: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared error over each example's pixels: [B, ...] x2 -> [B].

  Averaged over the batch this is Keras's ``mean_squared_error``.
  """
  diff = _per_example(reconstruction).astype(jnp.float32) - _per_example(target)
  return jnp.mean(jnp.square(diff), axis=-1)


def sse(*, reconstruction: jax.Array, target: jax.Array) -> jax.Array:
  """Sum of squared errors per example: [B, ...] x2 -> [B].

  The "squared error per image" of Hinton & Salakhutdinov (2006).
  """
  diff = _per_example(reconstruction).astype(jnp.float32) - _per_example(target)
  return jnp.sum(jnp.square(diff), axis=-1)


# Keras clips probabilities to [eps, 1 - eps] with eps = 1e-7 before the log.
_BCE_EPS = 1e-7


def binary_cross_entropy(*, reconstruction: jax.Array, target: jax.Array) -> jax.Array:
  """Pixel-wise binary cross-entropy, averaged over each example's pixels: -> [B].

  ``reconstruction`` holds probabilities (a sigmoid output), as in Keras's
  ``binary_crossentropy``; they are clipped to [1e-7, 1 - 1e-7] the same way.
  ``target`` may be any value in [0, 1] (MNIST's grey levels).
  """
  p = jnp.clip(_per_example(reconstruction).astype(jnp.float32), _BCE_EPS, 1 - _BCE_EPS)
  t = _per_example(target)
  return -jnp.mean(t * jnp.log(p) + (1 - t) * jnp.log1p(-p), axis=-1)


def l1_activity(*, code: jax.Array) -> jax.Array:
  """Sum of absolute code activations per example: [B, ...] -> [B].

  With weight λ and a batch mean this is Keras's ``activity_regularizer=l1(λ)``
  (λ · Σ|code| per example, averaged over the batch).
  """
  return jnp.sum(jnp.abs(_per_example(code).astype(jnp.float32)), axis=-1)


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """A registered term: the function and the names of the arrays it reads."""

  fn: Callable[..., jax.Array]
  reads: tuple[str, ...]

  def __call__(self, arrays: dict[str, jax.Array]) -> jax.Array:
    return self.fn(**{name: arrays[name] for name in self.reads})


_RECON = ("reconstruction", "target")

LOSS_TERMS: dict[str, LossTerm] = {
    "mse": LossTerm(mse, _RECON),
    "sse": LossTerm(sse, _RECON),
    "bce": LossTerm(binary_cross_entropy, _RECON),
    "l1_activity": LossTerm(l1_activity, ("code",)),
}


def register(name: str, fn: Callable[..., jax.Array], reads: tuple[str, ...]) -> LossTerm:
  """Registers ``fn`` as the loss term ``name`` reading the arrays ``reads``."""
  LOSS_TERMS[name] = term = LossTerm(fn, tuple(reads))
  return term


def get(name: str) -> LossTerm:
  try:
    return LOSS_TERMS[name]
  except KeyError:
    raise ValueError(
        f"Unknown loss term {name!r}; known terms: {sorted(LOSS_TERMS)}. "
        "Register new terms with aejax.losses.register.") from None


def parse_weights(spec: str) -> dict[str, float]:
  """Parses a config's ``losses`` string, ``"mse=1, l1_activity=1e-4"``, into weights.

  A string rather than a dict so that the command line can name any set of terms:
  ``--config.losses="bce=1,l1_activity=1e-4"``.
  """
  weights: dict[str, float] = {}
  for part in filter(None, (p.strip() for p in spec.split(","))):
    name, sep, value = part.partition("=")
    name = name.strip()
    try:
      weight = float(value) if sep else 1.0
    except ValueError:
      raise ValueError(f"config.losses: weight {value!r} of term {name!r} is not a "
                       "number; write e.g. 'mse=1, l1_activity=1e-4'.") from None
    get(name)
    if not weight >= 0 or weight == float("inf"):
      raise ValueError(f"config.losses: weight of {name!r} must be finite and ≥ 0, got {weight}.")
    if name in weights:
      raise ValueError(f"config.losses names {name!r} twice.")
    weights[name] = weight
  if not weights:
    raise ValueError("config.losses names no loss term; write e.g. 'mse=1'.")
  return weights
