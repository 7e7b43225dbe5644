"""The TopK sparse autoencoder: shapes, exactly k active units, unit-norm decoder
columns, the AuxK term against NumPy, the dead-unit counter, and one CLI run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import losses, models
from aejax.models import topk

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


def _numpy_auxk(aux, recon, target, scaled=False):
  """Gao et al.'s normalized_mse of the auxiliary decoding against the residual, per
  example (its batch mean is theirs), in float64."""
  b = len(aux)
  a, e = (np.asarray(v, np.float64).reshape(b, -1) for v in (aux, target - recon))
  if scaled:
    a = a * (np.sum(a * e) / np.sum(a * a))
  spread = np.mean(np.sum(np.square(e - e.mean(axis=0)), axis=-1))
  return np.sum(np.square(a - e), axis=-1) / spread


@pytest.mark.parametrize("name", ["auxk", "auxk_scaled"])
def test_auxk_terms_match_numpy(name):
  rng = np.random.default_rng(0)
  aux, recon, target = (rng.uniform(size=(4, 28, 28, 1)).astype(np.float32) for _ in range(3))
  term = losses.get(name)
  value = term({"auxk_reconstruction": aux, "reconstruction": recon, "target": target})
  assert value.shape == (4,)
  np.testing.assert_allclose(value, _numpy_auxk(aux, recon, target, name == "auxk_scaled"),
                             rtol=1e-4)
  # Normalised: a zero auxiliary decoding scores the residual's energy over its spread.
  zero = term({"auxk_reconstruction": 0 * aux, "reconstruction": recon, "target": target})
  np.testing.assert_allclose(zero, _numpy_auxk(0 * aux, recon, target), rtol=1e-4)
  # The residual is a constant: no gradient reaches the main reconstruction.
  grad = jax.grad(lambda r: term.fn(auxk_reconstruction=aux, reconstruction=r,
                                    target=target).sum())(recon)
  np.testing.assert_array_equal(grad, 0.0)


def test_auxk_scaled_ignores_the_auxiliary_scale():
  rng = np.random.default_rng(1)
  aux, recon, target = (rng.uniform(size=(3, 28, 28, 1)).astype(np.float32) for _ in range(3))
  value = lambda a: topk.auxk_scaled(auxk_reconstruction=a, reconstruction=recon,
                                     target=target)
  np.testing.assert_allclose(value(aux), value(5.0 * aux), rtol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_auxk_gradient_reaches_only_dead_units(activation):
  """The aux term's gradient touches the dead units' encoder rows, encoder biases and
  decoder columns only (and the shared pre-encoder bias), never a live unit's."""
  model, variables = build(k=4, k_aux=8, dead_after=10, auxk_activation=activation)
  dead = np.arange(64) % 3 == 0
  variables["activity"] = {"examples_since_fired": jnp.where(dead, 10.0, 9.0)}
  x = images(6)

  def aux_loss(params):
    out = model.apply({**variables, "params": params}, x)
    return topk.auxk(auxk_reconstruction=out["auxk_reconstruction"],
                     reconstruction=out["reconstruction"], target=x).mean()

  grads = jax.grad(aux_loss)(variables["params"])
  assert not np.any(np.asarray(grads["encoder_kernel"])[:, ~dead])
  assert not np.any(np.asarray(grads["encoder_bias"])[~dead])
  assert not np.any(np.asarray(grads["decoder_kernel"])[~dead])
  assert np.any(np.asarray(grads["decoder_kernel"])[dead])
  assert np.any(np.asarray(grads["encoder_kernel"])[:, dead])


def test_dead_counter_counts_examples_through_a_scanned_epoch():
  """Through ``lax.scan`` over train steps, a unit that never fires advances by the
  batch size each step; one that fires in a step goes back to 0."""
  from aejax import objective as objective_lib, step as step_lib
  import optax
  config = models.default_config("topk", width=16, k=2, k_aux=4, dead_after=10_000)
  model = models.build(config, SHAPE, np.full(SHAPE, 0.13, np.float32))
  variables = models.init_variables(model, config, SHAPE, jax.random.key(0))
  params = variables.pop("params")
  # Unit 0 can never be among the top 2; unit 1 always is.
  params["encoder_bias"] = params["encoder_bias"].at[0].set(-1e4).at[1].set(1e4)
  objective = objective_lib.Objective(model, config, {"mse": 1.0, "auxk": 1 / 32})
  optimizer = optax.sgd(0.0)
  train_step = step_lib.make_train_step(objective, optimizer)
  state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=optimizer.init(params), model_state=variables)
  batches = jax.random.randint(jax.random.key(4), (5, 8, *SHAPE), 0, 256).astype(jnp.uint8)
  state, _ = jax.lax.scan(lambda s, b: train_step(s, b, jax.random.key(0)), state, batches)
  since = np.asarray(state.model_state["activity"]["examples_since_fired"])
  assert since[0] == 5 * 8 and since[1] == 0


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
def test_cli_run_on_the_sample(tmp_path, cli):
  cli.run_config("topk", tmp_path, "--config.model.width=64", "--config.model.k=8",
                 "--config.model.dead_after=500")
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["model"]["name"] == "topk" and 0 < results["test"]["mse"] < 0.1
  # The config's terms (mse and its AuxK variant), each reported on the test set.
  assert set(results["test"]["loss_terms"]) == {"loss", *results["losses"]}
  assert set(results["losses"]) == {"mse", "auxk_scaled"}
