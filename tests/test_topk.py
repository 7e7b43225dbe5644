"""The TopK sparse autoencoder: shapes, exactly k active units, unit-norm decoder
columns, the AuxK term against NumPy, the dead-unit counter, and one CLI run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import losses, models
from aejax.models import topk
from tests.test_cli import run_cli

SHAPE = (28, 28, 1)


def build(**overrides):
  config = models.default_config("topk", **{"width": 64, "k": 8, **overrides})
  model = models.build(config, SHAPE, np.full(SHAPE, 0.13, np.float32))
  return model, models.init_variables(model, config, SHAPE, jax.random.key(0))


def images(batch, seed=1):
  return jax.random.uniform(jax.random.key(seed), (batch, *SHAPE))


@pytest.mark.parametrize("batch,output", [(1, "linear"), (5, "sigmoid")])
def test_shapes_and_range(batch, output):
  model, variables = build(output=output)
  out = model.apply(variables, images(batch))
  assert out["reconstruction"].shape == out["auxk_reconstruction"].shape == (batch, *SHAPE)
  assert out["code"].shape == out["pre_activation"].shape == (batch, 64)
  assert jnp.all((out["reconstruction"] >= 0) & (out["reconstruction"] <= 1))
  code = model.apply(variables, images(batch), method="encode")
  np.testing.assert_array_equal(code, out["code"])
  np.testing.assert_array_equal(model.apply(variables, code, method="decode"),
                                out["reconstruction"])


def test_top_k_code_matches_numpy():
  pre = np.asarray(jax.random.normal(jax.random.key(3), (6, 40)))
  code = np.asarray(topk.top_k_code(jnp.asarray(pre), 7))
  expected = np.zeros_like(pre)
  for row, values in enumerate(pre):
    keep = np.argsort(-values)[:7]
    expected[row, keep] = np.maximum(values[keep], 0)
  np.testing.assert_allclose(code, expected)


@pytest.mark.parametrize("k", [1, 64])
def test_l0_is_exactly_k(k):
  model, variables = build(k=k)
  # Positive pre-activations everywhere: relu keeps all k picked units.
  variables["params"]["encoder_bias"] = jnp.full((64,), 100.0)
  code = model.apply(variables, images(9), method="encode")
  np.testing.assert_array_equal(jnp.sum(code != 0, axis=-1), k)
  # At initialisation some pre-activations are negative: at most k, and exactly the
  # positive ones among the k largest.
  _, variables = build(k=k)
  out = model.apply(variables, images(9))
  top = jax.lax.top_k(out["pre_activation"], k)[0]
  np.testing.assert_array_equal(jnp.sum(out["code"] != 0, axis=-1), jnp.sum(top > 0, axis=-1))


def test_decoder_columns_have_unit_norm_whatever_the_stored_scale():
  model, variables = build(output="linear")
  eye = jnp.eye(64)
  columns = model.apply(variables, eye, False, method=topk.TopKAutoencoder.decode_linear)
  np.testing.assert_allclose(jnp.linalg.norm(columns, axis=-1), 1.0, rtol=1e-5)
  scaled = jax.tree.map(lambda v: v, variables)
  scaled["params"]["decoder_kernel"] = 7.5 * variables["params"]["decoder_kernel"]
  np.testing.assert_allclose(
      model.apply(scaled, eye, False, method=topk.TopKAutoencoder.decode_linear), columns,
      rtol=1e-5, atol=1e-7)
  # The encoder starts as the (normalised) decoder's transpose.
  np.testing.assert_allclose(variables["params"]["encoder_kernel"], columns.T, rtol=1e-6)


def test_linear_output_is_clipped_with_a_straight_through_gradient():
  x = jnp.array([-0.5, 0.25, 1.5])
  np.testing.assert_array_equal(topk.clip_straight_through(x), [0.0, 0.25, 1.0])
  np.testing.assert_array_equal(jax.grad(lambda x: topk.clip_straight_through(x).sum())(x),
                                [1.0, 1.0, 1.0])


def test_auxk_term_matches_numpy():
  rng = np.random.default_rng(0)
  aux, recon, target = (rng.uniform(size=(4, 28, 28, 1)).astype(np.float32) for _ in range(3))
  term = losses.get("auxk")
  value = term({"auxk_reconstruction": aux, "reconstruction": recon, "target": target})
  expected = np.mean(np.square(aux - (target - recon)).reshape(4, -1), axis=-1)
  assert value.shape == (4,)
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  # The residual is a constant: no gradient reaches the main reconstruction.
  grad = jax.grad(lambda r: topk.auxk(auxk_reconstruction=aux, reconstruction=r,
                                      target=target).sum())(recon)
  np.testing.assert_array_equal(grad, 0.0)


def test_dead_counter_and_auxiliary_code():
  model, variables = build(k=4, k_aux=8, dead_after=10)
  x = images(5)
  out, state = model.apply(variables, x, mutable=["activity"])
  since = state["activity"]["examples_since_fired"]
  fired = np.asarray(jnp.any(out["code"] > 0, axis=0))
  np.testing.assert_array_equal(since, np.where(fired, 0.0, 5.0))
  # No unit is dead yet: the auxiliary decoding is zero.
  np.testing.assert_array_equal(out["auxk_reconstruction"], 0.0)
  # Mark half the units dead: the auxiliary code uses those only, at most k_aux.
  dead = np.arange(64) % 2 == 0
  variables["activity"] = {"examples_since_fired": jnp.where(dead, 10.0, 0.0)}
  aux_code = topk.top_k_code(jnp.where(dead, out["pre_activation"], -jnp.inf), 8)
  assert not np.any(np.asarray(aux_code)[:, ~dead])
  out2 = model.apply(variables, x)  # evaluation: the collection stays frozen
  expected = model.apply(variables, aux_code, False,
                         method=topk.TopKAutoencoder.decode_linear).reshape(x.shape)
  np.testing.assert_allclose(out2["auxk_reconstruction"], expected, rtol=1e-5, atol=1e-6)
  assert np.any(np.asarray(expected) != 0)


def test_config_checks():
  with pytest.raises(ValueError, match="k=70"):
    build(k=70)
  with pytest.raises(ValueError, match="output"):
    build(output="tanh")


@pytest.mark.slow
def test_cli_run_on_the_sample(tmp_path):
  run_cli("topk", tmp_path, "--config.model.width=64", "--config.model.k=8",
          "--config.model.dead_after=500")
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["model"]["name"] == "topk" and 0 < results["test"]["mse"] < 0.1
  assert set(results["test"]["loss_terms"]) == {"loss", "mse", "auxk"}
