"""The contractive autoencoder: shapes, the Jacobian norm against finite differences
(float64) and Rifai et al.'s closed form, the loss term, and one CLI run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import losses, models


def build(shape, **overrides):
  config = models.default_config("contractive", **{"code_size": 6, **overrides})
  model = models.build(config, shape, np.full(shape, 0.3, np.float32))
  return model, models.init_variables(model, config, shape, jax.random.key(0))


def test_shapes():
  batch = 4
  model, variables = build((28, 28, 1), code_size=16, hidden=(32,))
  x = jax.random.uniform(jax.random.key(1), (batch, 28, 28, 1))
  out = model.apply(variables, x)
  assert out["reconstruction"].shape == x.shape and out["code"].shape == (batch, 16)
  assert out["jacobian_frobenius_sq"].shape == (batch,)
  assert jnp.all(out["jacobian_frobenius_sq"] > 0)
  np.testing.assert_array_equal(model.apply(variables, x, method="encode"), out["code"])


@pytest.mark.parametrize("hidden,activation", [((), "sigmoid"), ((5,), "tanh")])
def test_jacobian_norm_matches_finite_differences(hidden, activation):
  shape = (3, 3, 1)
  with jax.enable_x64(True):
    model, variables = build(shape, hidden=hidden, code_activation=activation)
    variables = jax.tree.map(lambda v: v.astype(jnp.float64), variables)
    x = jax.random.uniform(jax.random.key(2), (3, *shape), jnp.float64)
    exact = np.asarray(jax.jit(model.apply)(variables, x)["jacobian_frobenius_sq"])
    encode_jit = jax.jit(lambda x: model.apply(variables, x, method="encode"))
    encode = lambda x: np.asarray(encode_jit(x))
    eps = 1e-6
    flat = np.asarray(x).reshape(3, -1)
    columns = []
    for i in range(flat.shape[1]):
      step = np.zeros_like(flat)
      step[:, i] = eps
      plus = encode(jnp.asarray((flat + step).reshape(x.shape)))
      minus = encode(jnp.asarray((flat - step).reshape(x.shape)))
      columns.append((plus - minus) / (2 * eps))  # [B, K]: ∂ code / ∂ x_i
    fd = np.sum(np.square(np.stack(columns, axis=-1)), axis=(1, 2))
  assert exact.dtype == np.float64
  np.testing.assert_allclose(exact, fd, rtol=1e-7)


def test_one_sigmoid_layer_matches_rifai_closed_form():
  model, variables = build((28, 28, 1), code_size=10)
  x = jax.random.uniform(jax.random.key(3), (5, 28, 28, 1))
  out = jax.jit(model.apply)(variables, x)
  kernel = np.asarray(variables["params"]["encoder"]["Dense_0"]["kernel"])  # [D, K]
  h = np.asarray(out["code"])
  closed = np.sum(np.square(h * (1 - h)) * np.sum(np.square(kernel), axis=0), axis=-1)
  np.testing.assert_allclose(out["jacobian_frobenius_sq"], closed, rtol=1e-5)
  term = losses.get("contractive")(out)
  assert term.shape == (5,)
  np.testing.assert_allclose(term, closed, rtol=1e-5)


def test_penalty_gradient_reaches_the_encoder_only():
  model, variables = build((4, 4, 1), hidden=(5,))
  x = jax.random.uniform(jax.random.key(4), (2, 4, 4, 1))
  penalty = lambda p: model.apply({"params": p}, x)["jacobian_frobenius_sq"].sum()
  grads = jax.jit(jax.grad(penalty))(variables["params"])
  assert all(np.any(g != 0) for g in jax.tree.leaves(grads["encoder"]))
  assert all(np.all(g == 0) for g in jax.tree.leaves(grads["decoder"]))


@pytest.mark.slow
def test_cli_run_on_the_sample(tmp_path, cli):
  cli.run_config("contractive", tmp_path, "--config.model.code_size=16")
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["model"]["name"] == "contractive" and 0 < results["test"]["mse"] < 0.2
  assert set(results["test"]["loss_terms"]) == {"loss", "mse", "contractive"}
