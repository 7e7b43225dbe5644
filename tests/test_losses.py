"""Loss terms against NumPy references, jitted and not, with their properties."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from aejax import losses

# XLA flushes subnormal floats to zero, NumPy does not: keep them out of the inputs.
unit = st.floats(0.0, 1.0, width=32, allow_subnormal=False)
# A few fixed shapes: every new shape costs a compilation.
SHAPES = [(1, 1), (3, 7), (2, 5, 5, 1), (4, 8, 8, 3)]
images = st.sampled_from(SHAPES).flatmap(lambda shape: hnp.arrays(np.float32, shape, elements=unit))
codes = st.sampled_from(SHAPES[:3]).flatmap(lambda shape: hnp.arrays(
    np.float32, shape, elements=st.floats(-10, 10, width=32, allow_subnormal=False)))


def _pair(draw_shape_from):
  return st.builds(lambda a, seed: (a, np.random.default_rng(seed).random(a.shape, np.float32)),
                   draw_shape_from, st.integers(0, 2**31))


# NumPy references, written from the definitions rather than from the code.
def np_mse(r, t):
  return ((r.astype(np.float64) - t) ** 2).reshape(len(r), -1).mean(1)


def np_sse(r, t):
  return ((r.astype(np.float64) - t) ** 2).reshape(len(r), -1).sum(1)


def np_bce(r, t):
  # The clip bounds are float32 numbers, as in the float32 computation being checked.
  p = np.clip(r, np.float32(1e-7), np.float32(1 - 1e-7)).astype(np.float64)
  return -(t * np.log(p) + (1 - t) * np.log(1 - p)).reshape(len(r), -1).mean(1)


def np_l1(c):
  return np.abs(c.astype(np.float64)).reshape(len(c), -1).sum(1)


class LossesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @settings(max_examples=30, deadline=None)
  @given(pair=_pair(images))
  def test_reconstruction_terms_match_numpy(self, pair):
    r, t = pair
    for fn, ref in ((losses.mse, np_mse), (losses.sse, np_sse),
                    (losses.binary_cross_entropy, np_bce)):
      got = self.variant(fn)(reconstruction=r, target=t)
      chex.assert_shape(got, (len(r),))
      np.testing.assert_allclose(got, ref(r, t), rtol=2e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @settings(max_examples=30, deadline=None)
  @given(code=codes)
  def test_l1_activity_matches_numpy(self, code):
    got = self.variant(losses.l1_activity)(code=code)
    chex.assert_shape(got, (len(code),))
    np.testing.assert_allclose(got, np_l1(code), rtol=2e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(pair=_pair(images))
def test_mse_nonnegative_and_zero_only_when_equal(pair):
  r, t = pair
  assert np.all(losses.mse(reconstruction=r, target=t) >= 0)
  np.testing.assert_array_equal(losses.mse(reconstruction=t, target=t), 0.0)
  differs = np.any((r != t).reshape(len(r), -1), axis=1)
  assert np.all(np.asarray(losses.mse(reconstruction=r, target=t))[differs] > 0)


@settings(max_examples=40, deadline=None)
@given(code=codes, scale=st.floats(-5, 5))
def test_l1_is_absolutely_homogeneous_of_degree_one(code, scale):
  np.testing.assert_allclose(losses.l1_activity(code=scale * code),
                             abs(scale) * losses.l1_activity(code=code), rtol=1e-5, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(pair=_pair(images))
def test_sse_is_mse_times_pixels_and_bce_is_minimal_at_target(pair):
  r, t = pair
  pixels = np.prod(r.shape[1:])
  np.testing.assert_allclose(losses.sse(reconstruction=r, target=t),
                             pixels * losses.mse(reconstruction=r, target=t), rtol=1e-5, atol=1e-6)
  # Cross-entropy of t against itself is its entropy, the minimum over reconstructions.
  assert np.all(losses.binary_cross_entropy(reconstruction=t, target=t)
                <= losses.binary_cross_entropy(reconstruction=r, target=t) + 1e-5)


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(0)
  r = jnp.asarray(rng.uniform(0.05, 0.95, (3, 5)))
  t = jnp.asarray(rng.uniform(0, 1, (3, 5)))
  c = jnp.asarray(rng.uniform(0.1, 2, (3, 4)) * rng.choice([-1, 1], (3, 4)))
  with jax.enable_x64(True):
    for fn in (lambda x: losses.mse(reconstruction=x, target=t).sum(),
               lambda x: losses.binary_cross_entropy(reconstruction=x, target=t).sum()):
      chex.assert_numerical_grads(fn, (r.astype(jnp.float64),), order=1)
    chex.assert_numerical_grads(lambda x: losses.l1_activity(code=x).sum(),
                                (c.astype(jnp.float64),), order=1)


def test_registry_and_parse_weights():
  assert losses.parse_weights("mse=1, l1_activity=1e-4") == {"mse": 1.0, "l1_activity": 1e-4}
  assert losses.parse_weights("bce") == {"bce": 1.0}
  arrays = {"reconstruction": jnp.ones((2, 3)), "target": jnp.zeros((2, 3)),
            "code": -jnp.ones((2, 4))}
  np.testing.assert_allclose(losses.get("mse")(arrays), [1.0, 1.0])
  np.testing.assert_allclose(losses.get("l1_activity")(arrays), [4.0, 4.0])


@pytest.mark.parametrize("spec, message", [
    ("mse=1, kl=2", "Unknown loss term 'kl'"),
    ("mse=abc", "is not a number"),
    ("mse=-1", "must be finite and ≥ 0"),
    ("mse=nan", "must be finite and ≥ 0"),
    ("mse=1, mse=2", "names 'mse' twice"),
    (" , ", "names no loss term"),
])
def test_parse_weights_rejects_bad_specs(spec, message):
  with pytest.raises(ValueError, match=message):
    losses.parse_weights(spec)
