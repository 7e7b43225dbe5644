"""The train step: pure, jit-invariant, deterministic, learning; epochs; NaN handling;
the objective and the engine's backend rules."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import config as config_lib
from aejax import corruption, data, engine, losses, models, optimizer as optimizer_lib
from aejax import step as step_lib
from aejax.objective import Objective
from experiments.configs import base

N, BATCH = 64, 16
SPEC = data.DataSpec(image_shape=(28, 28, 1), n_train=N)


def model_block(name="mlp", **overrides):
  return models.default_config(name, **(overrides or (
      dict(code_size=16, hidden=(32,)) if name == "mlp" else {})))


def make_config(loss_spec="mse=1, l1_activity=1e-3", corrupt=("gaussian", 0.5), seed=0,
                microbatch_size=0, name="mlp", **model):
  config = base.get_config()
  config.model = model_block(name, **model)
  config.learning_rate, config.num_epochs, config.batch_size = 1e-2, 2, BATCH
  config.losses, config.seed, config.microbatch_size = loss_spec, seed, microbatch_size
  config.corruption.name, config.corruption.level = corrupt
  return config


def setup(*args, **kwargs):
  """The engine's train step and initial state for a small config, and random images."""
  run = engine.setup(make_config(*args, **kwargs), SPEC)
  images = np.random.default_rng(0).integers(0, 256, (N, 28, 28, 1), dtype=np.uint8)
  return run.program.train_step, run.state, images


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


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_one_step_on_a_fixed_batch_lowers_the_loss(name):
  step, state, images = setup(corrupt=("none", 0.0), name=name)
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
    start, run = step_lib.make_epoch_fns(step, N, BATCH, "step")
    state, _ = run(state, jnp.asarray(images), start(state, jax.random.key(seed)),
                   jax.random.key(seed), N // BATCH)
    runs.append(state.params)
  chex.assert_trees_all_equal(runs[0], runs[1])
  assert not np.allclose(runs[0]["encoder"]["Dense_0"]["kernel"],
                         runs[2]["encoder"]["Dense_0"]["kernel"])


def test_scan_and_step_epochs_agree():
  results = {}
  for mode in ("scan", "step"):
    step, state, images = setup()
    start, run = step_lib.make_epoch_fns(step, N, BATCH, mode)
    for _ in range(2):
      state, history = run(state, jnp.asarray(images), start(state, jax.random.key(1)),
                           jax.random.key(2), N // BATCH)
    results[mode] = (state, history)
  chex.assert_trees_all_close(results["scan"], results["step"], rtol=1e-4, atol=1e-6)
  assert results["scan"][1]["loss"].shape == (N // BATCH,)


@pytest.mark.parametrize("cuts", [(1, 3), (2, 1, 1), (3, 1)])
def test_an_epoch_cut_into_chunks_anywhere_is_the_epoch_in_one_call(cuts):
  """Where a run may stop or save (between chunks) changes nothing: each step gathers
  its batch and draws its noise by its number, and a chunk of any length compiles the
  same step, so the state and the metrics are the whole epoch's, bit for bit."""
  step, state, images = setup()
  start, run = step_lib.make_epoch_fns(step, N, BATCH, "scan")
  images, key = jnp.asarray(images), jax.random.key(2)
  order = start(state, jax.random.key(1))
  whole, history = run(jax.tree.map(jnp.copy, state), images, order, key, N // BATCH)
  parts = []
  for steps in cuts:
    state, part = run(state, images, order, key, steps)
    parts.append(part)
  chex.assert_trees_all_equal(state, whole)
  chex.assert_trees_all_equal(jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts), history)


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
  first = step_lib.epoch_permutation(key, jnp.asarray(0), 70, 16)
  assert first.shape == (4, 16) and len(np.unique(first)) == 64
  np.testing.assert_array_equal(first, step_lib.epoch_permutation(key, jnp.asarray(3), 70, 16))
  assert not np.array_equal(first, step_lib.epoch_permutation(key, jnp.asarray(4), 70, 16))


def test_check_finite_names_step_and_term():
  history = {"loss": np.array([1.0, np.nan]), "mse": np.array([1.0, 2.0]),
             "l1_activity": np.array([3.0, np.inf])}
  with pytest.raises(step_lib.NonFiniteLossError, match=r"'l1_activity' became inf at step 12"):
    step_lib.check_finite(history, first_step=10)
  step_lib.check_finite({"loss": np.ones(3)}, 0)


@pytest.mark.parametrize("name, model", [("mlp", {}), ("conv", dict(features=(4, 4)))])
def test_microbatched_step_equals_the_whole_batch_step(name, model):
  """Chunks of the batch give the same gradient (the noise is drawn for the whole
  batch first). Plain SGD with rate 1, so the update *is* the gradient (Adam's first
  step would blow float rounding of near-zero gradients up to ±lr)."""
  block = model_block(name, **model)
  net = models.build(block, (28, 28, 1))
  objective = Objective(net, block, losses.parse_weights("mse=1, l1_activity=1e-3"))
  params = models.init_variables(net, block, (28, 28, 1), jax.random.key(0))["params"]
  state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=optax.sgd(1.0).init(params))
  images = np.random.default_rng(0).integers(0, 256, (BATCH, 28, 28, 1), dtype=np.uint8)
  results = []
  for size in (None, BATCH // 4, BATCH // 8):
    step = step_lib.make_train_step(objective, optax.sgd(1.0),
                                    corruption.make("gaussian", 0.5), microbatch_size=size)
    new_state, metrics = jax.jit(step)(state, images, jax.random.key(3))
    grads = jax.tree.map(jnp.subtract, state.params, new_state.params)
    results.append((grads, metrics))
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(results[0][0]))
  for grads, metrics in results[1:]:
    chex.assert_trees_all_close(grads, results[0][0], rtol=1e-4, atol=1e-5 * scale)
    chex.assert_trees_all_close(metrics, results[0][1], rtol=1e-5)


def test_a_microbatch_size_that_does_not_divide_the_batch_is_refused():
  run = engine.setup(make_config(), SPEC)
  optimizer = optimizer_lib.make_optimizer(run.config, run.plan.steps_per_epoch)
  step = step_lib.make_train_step(run.objective, optimizer, run.corrupt, 5)
  images = np.zeros((BATCH, 28, 28, 1), np.uint8)
  with pytest.raises(ValueError, match="microbatch_size=5 does not divide the batch of 16"):
    step(run.state, images, jax.random.key(0))


def test_auto_microbatch_size_keeps_a_chunks_activations_small_on_cpu(monkeypatch):
  config = base.get_config()
  config.batch_size = 256
  mlp = models.build(config.model, (28, 28, 1))
  config.model = models.default_config("conv")
  conv = models.build(config.model, (28, 28, 1))
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert engine.resolve_microbatch_size(config, conv, (28, 28, 1)) == 16
  config.model = models.default_config("mlp")
  assert engine.resolve_microbatch_size(config, mlp, (28, 28, 1)) == 256
  config.model = models.default_config("conv")
  config.batch_size = 257  # prime: chunks of 1 would be 257 unrolled copies
  assert engine.resolve_microbatch_size(config, conv, (28, 28, 1)) == 257
  config.batch_size, config.microbatch_size = 256, 64
  assert engine.resolve_microbatch_size(config, conv, (28, 28, 1)) == 64
  config.microbatch_size = 0
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert engine.resolve_microbatch_size(config, conv, (28, 28, 1)) == 256


def test_auto_epoch_mode_comes_from_the_family(monkeypatch):
  config = base.get_config()
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert engine.resolve_epoch_mode(config) == "scan"
  config.model = models.default_config("conv")
  assert models.get("conv").cpu_epoch_mode == "step"
  assert engine.resolve_epoch_mode(config) == "step"
  config.epoch_mode = "scan"
  assert engine.resolve_epoch_mode(config) == "scan"
  config.epoch_mode = "auto"
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert engine.resolve_epoch_mode(config) == "scan"


@pytest.mark.parametrize("num_epochs, warmup_epochs, steps", [(1, 1.0, 2), (15, 1.0, 4),
                                                              (2, 0.2, 0), (3, 5.0, 6)])
def test_the_warm_up_is_clamped_to_half_of_the_run(num_epochs, warmup_epochs, steps):
  """Any positive num_epochs trains on every config (sparse.py warms up for 1 epoch)."""
  config = base.get_config()
  config.num_epochs, config.warmup_epochs = num_epochs, warmup_epochs
  assert optimizer_lib.warmup_steps(config, 4) == steps
  lr = optimizer_lib.make_optimizer(config, 4)
  del lr  # builds: optax refuses a warm-up as long as the decay


def test_the_objective_serves_training_and_evaluation_with_the_same_terms():
  run = engine.setup(make_config(corrupt=("none", 0.0)), SPEC)
  x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))
  batch, key = {"inputs": x, "target": x}, jax.random.key(1)
  loss, terms, outputs = run.objective(run.state.params, batch, key)
  per_loss, per_terms, _ = run.objective.per_example(run.state.params, batch, key)
  assert per_loss.shape == (8,) and {k: v.shape for k, v in per_terms.items()} == {
      "mse": (8,), "l1_activity": (8,)}
  np.testing.assert_allclose(loss, per_loss.mean(), rtol=1e-6)
  np.testing.assert_allclose(terms["mse"], losses.mse(reconstruction=outputs["reconstruction"],
                                                      target=x).mean(), rtol=1e-6)


def test_a_term_reading_an_array_the_model_lacks_fails_at_setup():
  losses.register("needs_mean", lambda *, mean: mean.sum(-1), ("mean",))
  try:
    with pytest.raises(ValueError, match=r"'needs_mean' reads \['mean'\], which model 'mlp'"):
      engine.setup(make_config(loss_spec="mse=1, needs_mean=1"), SPEC)
  finally:
    del losses.LOSS_TERMS["needs_mean"]


def test_a_second_epoch_compiles_nothing():
  """chex.assert_max_traces on the step inside both epoch modes and on the evaluation:
  a second epoch (and a second evaluation) traces nothing new."""
  for mode in ("scan", "step"):
    chex.clear_trace_counter()
    run = engine.setup(make_config(), SPEC)
    traced_step = chex.assert_max_traces(run.program.train_step, n=1)
    start, run_chunk = step_lib.make_epoch_fns(traced_step, N, BATCH, mode)
    state, images = run.state, jnp.asarray(np.zeros((N, 28, 28, 1), np.uint8))
    for _ in range(2):
      state, _ = run_chunk(state, images, start(state, run.keys.shuffle), run.keys.noise,
                           N // BATCH)
    evaluator = run.evaluator(np.zeros((10, 28, 28, 1), np.uint8))
    evaluator._per_example = chex.assert_max_traces(evaluator._per_example, n=2)
    for _ in range(2):  # eval_shape + the scan body: 2 traces, then none
      evaluator.loss_terms(state.variables)


def test_the_exponential_schedule_decays_to_the_final_fraction():
  config = base.get_config()
  config.schedule, config.learning_rate, config.final_lr_fraction = "exponential", 1e-3, 0.1
  config.num_epochs = 10
  config_lib.validate(config)
  optimizer = optimizer_lib.make_optimizer(config, steps_per_epoch=100)
  params = {"w": jnp.zeros(())}
  state = optimizer.init(params)
  steps = {0: 1e-3, 500: 1e-3 * 0.1 ** 0.5, 1000: 1e-4}  # geometric over the 1,000 steps
  for t in range(1001):
    # Adam's update of a constant gradient is the learning rate of its step.
    updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
    if t in steps:
      np.testing.assert_allclose(-updates["w"], steps[t], rtol=1e-3)
  config.final_lr_fraction = 0.0
  with pytest.raises(ValueError, match="final_lr_fraction must be > 0 for the exponential"):
    config_lib.validate(config)
