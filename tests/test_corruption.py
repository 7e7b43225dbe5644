"""Corruptions: pure, shape- and dtype-preserving, in [0, 1], against NumPy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from aejax import corruption

# XLA flushes subnormal floats to zero, NumPy does not: keep them out of the inputs.
# A few fixed shapes: every new shape costs a compilation, and these cover vectors,
# odd sizes and image batches.
SHAPES = [(1, 1), (3, 7), (2, 5, 5, 1), (4, 8, 8, 3)]
images = st.sampled_from(SHAPES).flatmap(lambda shape: hnp.arrays(
    np.float32, shape, elements=st.floats(0.0, 1.0, width=32, allow_subnormal=False)))
levels = st.floats(0.0, 1.0)
KINDS = ("gaussian", "masking", "salt_and_pepper")


def corrupt(name, key, x, level):
  """``make(name, level)(key, x)`` with the level an argument: jitted, it is traced (as
  a sweep's member passes it), so the variant compiles once per corruption and shape
  rather than once per example; un-jitted, ``make`` gets the drawn Python float."""
  return corruption.make(name, level)(key, x)


# Each jitted example of a new shape costs a compilation, so these two draw fewer
# examples than the others.
class CorruptionTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @settings(max_examples=12, deadline=None)
  @given(x=images, level=levels, seed=st.integers(0, 2**31 - 1))
  def test_shape_dtype_range_and_purity(self, x, level, seed):
    key = jax.random.key(seed)
    fn = self.variant(corrupt, static_argnums=0)
    for name in KINDS:
      y = fn(name, key, x, level)
      chex.assert_shape(y, x.shape)
      chex.assert_type(y, x.dtype)
      assert np.all((np.asarray(y) >= 0) & (np.asarray(y) <= 1))
      np.testing.assert_array_equal(y, fn(name, key, x, level))  # same key, same output

  @chex.variants(with_jit=True, without_jit=True)
  @settings(max_examples=12, deadline=None)
  @given(x=images, level=st.floats(0.0, 2.0), seed=st.integers(0, 2**31 - 1))
  def test_gaussian_matches_numpy(self, x, level, seed):
    key = jax.random.key(seed)
    noise = np.asarray(jax.random.normal(key, x.shape, jnp.float32))
    expected = np.clip(x + np.float32(level) * noise, 0, 1)
    got = self.variant(corrupt, static_argnums=0)("gaussian", key, x, level)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(x=images, seed=st.integers(0, 2**31 - 1))
def test_zero_level_is_identity(x, seed):
  for name in (*KINDS, "none"):
    np.testing.assert_array_equal(corruption.make(name, 0.0)(jax.random.key(seed), x), x)


@settings(max_examples=25, deadline=None)
@given(x=images, level=levels, seed=st.integers(0, 2**31 - 1))
def test_masking_only_zeroes_pixels(x, level, seed):
  y = np.asarray(corruption.make("masking", level)(jax.random.key(seed), x))
  assert np.all((y == x) | (y == 0))


@settings(max_examples=25, deadline=None)
@given(x=images, level=levels, seed=st.integers(0, 2**31 - 1))
def test_salt_and_pepper_only_sets_extremes(x, level, seed):
  y = np.asarray(corruption.make("salt_and_pepper", level)(jax.random.key(seed), x))
  assert np.all((y == x) | (y == 0) | (y == 1))


def test_full_level_hits_every_pixel_and_rates_are_right():
  x = jnp.full((200, 28, 28, 1), 0.5)
  key = jax.random.key(0)
  assert np.all(corruption.make("masking", 1.0)(key, x) == 0)
  assert set(np.unique(corruption.make("salt_and_pepper", 1.0)(key, x))) == {0.0, 1.0}
  for name in ("masking", "salt_and_pepper"):
    hit = np.mean(np.asarray(corruption.make(name, 0.3)(key, x)) != 0.5)
    assert abs(hit - 0.3) < 0.01, (name, hit)
  noisy = np.asarray(corruption.make("gaussian", 0.1)(key, x))
  assert abs(noisy.std() - 0.1) < 0.005  # 0.5 ± 0.1 is almost never clipped


@pytest.mark.parametrize("name, level, message", [
    ("blur", 0.1, "Unknown corruption 'blur'"),
    ("gaussian", -0.5, "must be ≥ 0"),
    ("masking", 1.5, r"must be in \[0, 1\]"),
    ("salt_and_pepper", float("nan"), r"must be in \[0, 1\]"),
])
def test_invalid_corruptions_raise(name, level, message):
  with pytest.raises(ValueError, match=message):
    corruption.make(name, level)
