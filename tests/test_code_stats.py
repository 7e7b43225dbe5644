"""code_stats.code_statistics against a NumPy computation on a toy encoder."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from aejax import code_stats


def encode(variables, x):
  """A relu 'code': each pixel minus a per-pixel threshold: [B, 4, 4, 1] -> [B, 16]."""
  return jnp.maximum(x.reshape(len(x), -1) - variables["threshold"], 0.0)


def decode(variables, code):
  return (0.5 * code).reshape(len(code), 4, 4, 1)


@pytest.mark.parametrize("batch_size", [7, 64])
def test_matches_numpy(batch_size):
  rng = np.random.default_rng(0)
  train = rng.integers(0, 256, size=(45, 4, 4, 1), dtype=np.uint8)
  test = rng.integers(0, 256, size=(23, 4, 4, 1), dtype=np.uint8)
  # Units 0-3 can never fire (threshold above any pixel); 0.601 is no k/255, so
  # float32 and float64 agree on which pixels pass.
  threshold = np.where(np.arange(16) < 4, 2.0, 0.601).astype(np.float32)
  variables = {"threshold": jnp.asarray(threshold)}
  stats = code_stats.code_statistics(encode, decode, variables, train, test, batch_size)

  def codes(images):
    return np.maximum(images.reshape(len(images), -1) / 255.0 - threshold, 0.0)

  fired = np.any(codes(train) != 0, axis=0)
  x = test.reshape(len(test), -1) / 255.0
  sse = np.sum(np.square(0.5 * codes(test) - x))
  sst = np.sum(np.square(x - x.mean(axis=0)))
  assert stats["code_units"] == 16 and stats["dead_count"] == int(np.sum(~fired)) >= 4
  assert stats["dead_fraction"] == pytest.approx(np.mean(~fired))
  assert stats["l0"] == pytest.approx(np.mean(np.sum(codes(test) != 0, axis=1)), rel=1e-6)
  assert stats["fraction_variance_explained"] == pytest.approx(1 - sse / sst, rel=1e-4)


def test_mean_image_explains_nothing():
  rng = np.random.default_rng(1)
  test = rng.integers(0, 256, size=(10, 4, 4, 1), dtype=np.uint8)
  mean = jnp.asarray(test.mean(axis=0) / 255.0, jnp.float32)
  stats = code_stats.code_statistics(
      lambda v, x: x.reshape(len(x), -1), lambda v, c: jnp.broadcast_to(mean, (len(c), 4, 4, 1)),
      {}, test, test, 4)
  assert stats["fraction_variance_explained"] == pytest.approx(0.0, abs=1e-5)
  assert stats["dead_fraction"] == 0.0


def test_the_same_functions_compile_once_for_every_model_they_measure():
  """A sweep's members: one (encode, decode) pair, other variables and test sets of the
  same shape, and each pass traced once."""
  traces = []

  def counted_encode(variables, x):
    traces.append(x.shape)
    return encode(variables, x)

  rng = np.random.default_rng(2)
  images = [rng.integers(0, 256, size=(20, 4, 4, 1), dtype=np.uint8) for _ in range(3)]
  results = [code_stats.code_statistics(
      counted_encode, decode, {"threshold": jnp.full((16,), t, jnp.float32)}, x, x, 8)
      for t, x in zip((0.2, 0.5, 0.8), images)]
  assert len(traces) == 3  # eval_shape and the scan body of one pass, the other's body
  assert results[0]["l0"] > results[1]["l0"] > results[2]["l0"]
