"""The train step: pure, jit-invariant, deterministic, learning; epochs; NaN handling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import corruption, losses, models, train
from experiments.configs import base

N, BATCH = 64, 16


def setup(loss_spec="mse=1, l1_activity=1e-3", corrupt=("gaussian", 0.5), seed=0,
          microbatch_size=None, **model):
  config = base.get_config()
  config.model.update(model or dict(code_size=16, hidden=(32,)))
  config.learning_rate = 1e-2
  config.num_epochs = 2
  net = models.build(config.model, (28, 28, 1))
  optimizer = train.make_optimizer(config, N // BATCH)
  loss_fn = train.make_loss_fn(net, losses.parse_weights(loss_spec))
  step = train.make_train_step(loss_fn, optimizer, corruption.make(*corrupt), microbatch_size)
  state = train.init_state(net, optimizer, (28, 28, 1), jax.random.key(seed))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (N, 28, 28, 1), dtype=np.uint8)
  return step, state, images


class TrainStepTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_step_jitted_and_not_agree_and_report_every_term(self):
    step, state, images = setup()
    new_state, metrics = self.variant(step)(state, images[:BATCH], jax.random.key(3))
    reference, ref_metrics = jax.jit(step)(state, images[:BATCH], jax.random.key(3))
    # Adam normalises tiny first-step gradients, so fusion-order float noise shows at 1e-4.
    chex.assert_trees_all_close(new_state, reference, rtol=1e-4, atol=1e-5)
    assert set(metrics) == {"loss", "mse", "l1_activity"}
    np.testing.assert_allclose(metrics["loss"], metrics["mse"] + 1e-3 * metrics["l1_activity"],
                               rtol=1e-6)
    chex.assert_trees_all_close(metrics, ref_metrics, rtol=1e-5)
    assert int(new_state.step) == 1


@pytest.mark.parametrize("model", [dict(code_size=16, hidden=(32,)), dict(name="conv")])
def test_one_step_on_a_fixed_batch_lowers_the_loss(model):
  step, state, images = setup(corrupt=("none", 0.0), **model)
  step = jax.jit(step)
  key = jax.random.key(0)
  _, before = step(state, images[:BATCH], key)
  state, _ = step(state, images[:BATCH], key)
  _, after = step(state, images[:BATCH], key)
  assert after["loss"] < before["loss"]


def test_same_seed_same_parameters_other_seed_other_parameters():
  runs = []
  for seed in (0, 0, 1):
    step, state, images = setup(seed=seed)
    start, run = train.make_epoch_fns(step, N, BATCH, "step")
    state, _ = run(state, jnp.asarray(images), start(state, jax.random.key(seed)),
                   jax.random.key(seed))
    runs.append(state.params)
  chex.assert_trees_all_equal(runs[0], runs[1])
  assert not np.allclose(runs[0]["encoder"]["Dense_0"]["kernel"],
                         runs[2]["encoder"]["Dense_0"]["kernel"])


def test_scan_and_step_epochs_agree():
  results = {}
  for mode in ("scan", "step"):
    step, state, images = setup()
    start, run = train.make_epoch_fns(step, N, BATCH, mode)
    for _ in range(2):
      state, history = run(state, jnp.asarray(images), start(state, jax.random.key(1)),
                           jax.random.key(2))
    results[mode] = (state, history)
  chex.assert_trees_all_close(results["scan"], results["step"], rtol=1e-4, atol=1e-6)
  assert results["scan"][1]["loss"].shape == (N // BATCH,)


def test_noise_depends_on_step_not_on_call_order():
  """A resumed run (same state.step) draws the same corruption as an uninterrupted one."""
  step, state, images = setup()
  key = jax.random.key(7)
  a, _ = jax.jit(step)(state, images[:BATCH], key)
  b, _ = jax.jit(step)(state.replace(step=jnp.asarray(5, jnp.int32)), images[:BATCH], key)
  c, _ = jax.jit(step)(state.replace(step=jnp.asarray(5, jnp.int32)), images[:BATCH], key)
  chex.assert_trees_all_equal(b.params, c.params)
  assert not np.allclose(a.params["encoder"]["Dense_0"]["kernel"],
                         b.params["encoder"]["Dense_0"]["kernel"])


def test_epoch_order_is_a_permutation_fixed_by_the_epoch():
  key = jax.random.key(0)
  first = train.epoch_permutation(key, jnp.asarray(0), 70, 16)
  assert first.shape == (4, 16) and len(np.unique(first)) == 64
  np.testing.assert_array_equal(first, train.epoch_permutation(key, jnp.asarray(3), 70, 16))
  assert not np.array_equal(first, train.epoch_permutation(key, jnp.asarray(4), 70, 16))


def test_check_finite_names_step_and_term():
  history = {"loss": np.array([1.0, np.nan]), "mse": np.array([1.0, 2.0]),
             "l1_activity": np.array([3.0, np.inf])}
  with pytest.raises(train.NonFiniteLossError, match=r"'l1_activity' became inf at step 12"):
    train.check_finite(history, first_step=10)
  train.check_finite({"loss": np.ones(3)}, 0)


@pytest.mark.parametrize("model", [dict(code_size=16, hidden=(32,)),
                                   dict(name="conv", conv_features=(4, 4))])
def test_microbatched_step_equals_the_whole_batch_step(model):
  """Chunks of the batch give the same gradient (the noise is drawn for the whole
  batch first). Plain SGD with rate 1, so the update *is* the gradient (Adam's first
  step would blow float rounding of near-zero gradients up to ±lr)."""
  config = base.get_config()
  config.model.update(model)
  net = models.build(config.model, (28, 28, 1))
  loss_fn = train.make_loss_fn(net, losses.parse_weights("mse=1, l1_activity=1e-3"))
  state = train.init_state(net, optax.sgd(1.0), (28, 28, 1), jax.random.key(0))
  images = np.random.default_rng(0).integers(0, 256, (BATCH, 28, 28, 1), dtype=np.uint8)
  results = []
  for size in (None, BATCH // 4, BATCH // 8):
    step = train.make_train_step(loss_fn, optax.sgd(1.0), corruption.make("gaussian", 0.5),
                                 microbatch_size=size)
    new_state, metrics = jax.jit(step)(state, images, jax.random.key(3))
    grads = jax.tree.map(jnp.subtract, state.params, new_state.params)
    results.append((grads, metrics))
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(results[0][0]))
  for grads, metrics in results[1:]:
    chex.assert_trees_all_close(grads, results[0][0], rtol=1e-4, atol=1e-5 * scale)
    chex.assert_trees_all_close(metrics, results[0][1], rtol=1e-5)


def test_a_microbatch_size_that_does_not_divide_the_batch_is_refused():
  step, state, images = setup(microbatch_size=5)
  with pytest.raises(ValueError, match="microbatch_size=5 does not divide the batch of 16"):
    step(state, images[:BATCH], jax.random.key(0))


def test_auto_microbatch_size_keeps_a_chunks_activations_small_on_cpu(monkeypatch):
  config = base.get_config()
  config.batch_size = 256
  mlp = models.build(config.model, (28, 28, 1))
  config.model.name = "conv"
  conv = models.build(config.model, (28, 28, 1))
  # The conv net's largest activation: 28×28×32 float32 per image.
  assert models.largest_activation_bytes(conv, (28, 28, 1)) == 28 * 28 * 32 * 4
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert train.resolve_microbatch_size(config, conv, (28, 28, 1)) == 16
  assert train.resolve_microbatch_size(config, mlp, (28, 28, 1)) == 256
  config.batch_size = 257  # prime: chunks of 1 would be 257 unrolled copies
  assert train.resolve_microbatch_size(config, conv, (28, 28, 1)) == 257
  config.batch_size, config.microbatch_size = 256, 64
  assert train.resolve_microbatch_size(config, conv, (28, 28, 1)) == 64
  config.microbatch_size = 0
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert train.resolve_microbatch_size(config, conv, (28, 28, 1)) == 256


def test_auto_epoch_mode_keeps_conv_nets_out_of_loops_on_cpu(monkeypatch):
  config = base.get_config()
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert train.resolve_epoch_mode(config) == "scan"
  config.model.name = "conv"
  assert train.resolve_epoch_mode(config) == "step"
  config.epoch_mode = "scan"
  assert train.resolve_epoch_mode(config) == "scan"
  config.epoch_mode = "auto"
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert train.resolve_epoch_mode(config) == "scan"
