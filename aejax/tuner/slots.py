"""The slots a search trains side by side: a sweep's stacked state (``aejax.sweep``)
whose members' keys and numbers are runtime arrays, so that a slot refilled with a
new trial, or copied from another (PBT), compiles nothing; and the validation split
trials are judged on."""

from __future__ import annotations

import copy
import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aejax import code_stats, data as data_lib, engine, losses, models, sweep
from aejax import optimizer as optimizer_lib, step as step_lib
from aejax.objective import Objective, to_float
from aejax.tuner.space import SearchError

VALIDATION_FRACTION = 1 / 6  # MNIST's 60,000 train images: 50,000 to train, 10,000 to judge


def split_validation(dataset: data_lib.Dataset, fraction: float):
  """The dataset with a fixed ``fraction`` of its train set moved into its test split
  (what trials are judged on) in place of the test set."""
  n = dataset.n_train
  held = int(round(n * fraction))
  if not 0 < held < n:
    raise SearchError(f"--validation_fraction={fraction} holds out {held} of {n} train "
                      "images; give a fraction that leaves both splits some.")
  order = np.random.default_rng(0).permutation(n)
  train, val = np.sort(order[held:]), np.sort(order[:held])
  search = dataclasses.replace(
      dataset, train_images=dataset.train_images[train],
      train_labels=dataset.train_labels[train], test_images=dataset.train_images[val],
      test_labels=dataset.train_labels[val])
  return search


class Slots:
  """``size`` slots training side by side: a sweep's stacked state, with each slot's
  keys and numbers as runtime arrays, so that a refilled slot compiles nothing.

  ``fill(slot, overrides)`` starts a trial in a slot; ``train_epoch()`` trains every
  slot one epoch (``[steps, M]`` metrics on the host); ``validate()`` gives each
  slot's validation figures ``{name: [M]}``; ``variables(slot)`` its Flax variables;
  ``copy(slot, source, overrides)`` lets a slot go on from another's state (PBT).
  """

  def __init__(self, config: ml_collections.ConfigDict, dataset, size: int,
               keys: list[str]):
    self.base = copy.deepcopy(config)
    self.base.unlock()
    self.base.sweep = ""
    varied = [k for k in keys if k != "seed"]
    grid = sweep.member_config(self.base, {})
    base_numbers = sweep.numbers([grid], varied)
    laid = copy.deepcopy(self.base)
    laid.sweep = "; ".join([f"seed=0:{size}"] + [f"{k}={float(base_numbers[k][0])!r}"
                                                   for k in varied])
    try:  # the sweep's memory estimate, before a sweep of ``size`` members is made
      model = models.build(config.model, dataset.image_shape, pixel_mean=dataset.pixel_mean,
                           unbounded=not dataset.bounded)
      engine._check_memory(size, model, config, dataset.image_shape)
    except ValueError as e:
      raise SearchError(f"--slots={size} is too many: {e}") from None
    try:
      self.run = engine.setup(laid, dataset)
    except ValueError as e:
      raise SearchError(str(e)) from None
    self.size, self.varied = size, varied
    self.traces = {"epoch": 0, "fill": 0, "validate": 0, "copy": 0}
    self.trial_configs: list[ml_collections.ConfigDict | None] = [None] * size
    self.state = self.run.state
    self.keys = self.run.keys
    self.numbers = {k: np.repeat(v, size) for k, v in base_numbers.items()}
    self._images = jax.device_put(dataset.train_images)
    self._val = _padded(dataset.test_images, config.eval_batch_size)
    self._build()

  def _build(self):
    run, config = self.run, self.base
    plan, model = run.plan, run.model
    steps, n, batch = plan.steps_per_epoch, plan.n_train, config.batch_size
    image_shape = self._images.shape[1:]
    train_step = run.program.train_step
    in_turn = plan.member_group > 0  # XLA:CPU's conv nets: slots one after another

    def over_slots(fn):
      if not in_turn:
        return jax.vmap(fn)
      return lambda *args: jax.lax.map(lambda a: fn(*a), args)

    def slot_step(state, order, noise_key, numbers, images):
      return train_step(state, images[order[state.step % steps]], noise_key, numbers)

    def step_all(state, orders, noise_keys, numbers, images):
      return over_slots(lambda s, o, k, nb: slot_step(s, o, k, nb, images))(
          state, orders, noise_keys, numbers)

    def orders_of(state, shuffle_keys):
      return jax.vmap(lambda s, k: step_lib.epoch_permutation(k, s, n, batch))(
          state.step, shuffle_keys)

    if plan.epoch_mode == "scan":
      @functools.partial(jax.jit, donate_argnums=0)
      def epoch(state, shuffle_keys, noise_keys, numbers, images):
        self.traces["epoch"] += 1  # at trace time only
        orders = orders_of(state, shuffle_keys)
        return jax.lax.scan(
            lambda s, _: step_all(s, orders, noise_keys, numbers, images), state,
            length=steps)
      self._epoch = epoch
    else:  # one compiled step per batch, dispatched from here
      @functools.partial(jax.jit, donate_argnums=0)
      def one_step(state, orders, noise_keys, numbers, images):
        self.traces["epoch"] += 1
        return step_all(state, orders, noise_keys, numbers, images)
      orders_jit = jax.jit(orders_of)

      def epoch(state, shuffle_keys, noise_keys, numbers, images):
        orders, history = orders_jit(state, shuffle_keys), []
        for _ in range(steps):
          state, metrics = one_step(state, orders, noise_keys, numbers, images)
          history.append(metrics)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)
      self._epoch = epoch

    def fresh(seed, numbers):
      """A trial's first state and keys, as ``engine.setup`` makes a run's."""
      self.traces["fill"] += 1
      keys = jax.random.split(jax.random.key(seed), 4)
      variables = models.init_variables(model, config.model, image_shape, keys[0])
      params = variables.pop("params")
      optimizer = optimizer_lib.make_optimizer(sweep.Numbers(config, numbers), steps)
      state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                  opt_state=optimizer.init(params), model_state=variables)
      return state, keys

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def put(state, keys, seed, numbers, slot):
      one, key = fresh(seed, numbers)
      state = jax.tree.map(lambda full, x: full.at[slot].set(x), state, one)
      keys = tuple(full.at[slot].set(k) for full, k in zip(keys, key))
      return state, keys
    self._put = put

    @functools.partial(jax.jit, donate_argnums=0)
    def copy_slot(state, source, slot):
      """Population-based training's exploit: slot takes source's parameters, optimizer
      state and step (its keys stay its own)."""
      self.traces["copy"] += 1
      return jax.tree.map(lambda full: full.at[slot].set(full[source]), state)
    self._copy = copy_slot

    bounded = plan.bounded
    denoising = config.corruption.name != "none"

    def val_one(params, model_state, numbers, eval_key, images, mask):
      view = sweep.Numbers(config, numbers)
      objective = Objective(model, config.model, view.loss_weights())
      corrupt = run.corrupt if not denoising else _corruption(config, view)

      def body(totals, chunk):
        i, images_u8, m = chunk
        key = jax.random.fold_in(eval_key, i)
        x = to_float(images_u8)
        model_key = jax.random.fold_in(key, 1)
        _, terms, outputs = objective.per_example(params, {"inputs": x, "target": x},
                                                  model_key, model_state)
        recon = {"reconstruction": outputs["reconstruction"], "target": x}
        out = {"mse": losses.mse(**recon)}
        if bounded:
          out["bce"] = losses.binary_cross_entropy(**recon)
        if denoising:
          _, terms, denoised = objective.per_example(
              params, {"inputs": corrupt(key, x), "target": x}, model_key, model_state)
          out["mse_denoised"] = losses.mse(reconstruction=denoised["reconstruction"],
                                           target=x)
        out["loss"] = sum(objective.weights[k] * terms[k] for k in objective.weights)
        out.update(terms)
        return jax.tree.map(lambda t, v: t + jnp.sum(jnp.where(m, v, 0.0)), totals,
                            out), None

      names = ["mse", *(["bce"] if bounded else []), *(["mse_denoised"] if denoising else []),
               "loss", *objective.weights]
      zeros = {k: jnp.zeros((), jnp.float32) for k in names}
      totals, _ = jax.lax.scan(body, zeros, (jnp.arange(images.shape[0]), images, mask))
      return totals

    @jax.jit
    def validate(state, eval_keys, numbers, images, mask):
      self.traces["validate"] += 1
      return jax.vmap(val_one, in_axes=(0, 0, 0, 0, None, None))(
          state.params, state.model_state, numbers, eval_keys, images, mask)
    self._validate = validate

  def objectives(self) -> list[str]:
    """The figures ``validate`` gives: what a search may optimise."""
    names = ["mse", "loss", *losses.parse_weights(self.base.losses)]
    if self.run.plan.bounded:
      names.append("bce")
    if self.base.corruption.name != "none":
      names.append("mse_denoised")
    return names

  def _write_numbers(self, slot: int, overrides: dict) -> ml_collections.ConfigDict:
    trial = sweep.member_config(self.base, overrides)
    own = sweep.numbers([trial], self.varied)
    for key in self.varied:
      self.numbers[key] = self.numbers[key].copy()
      self.numbers[key][slot] = own[key][0]
    self.trial_configs[slot] = trial
    return trial

  def fill(self, slot: int, overrides: dict) -> ml_collections.ConfigDict:
    """Starts the trial of ``overrides`` in ``slot``: new parameters, optimizer state,
    step 0 and the keys of its seed; its numbers in place of the slot's. Returns the
    trial's config (the run ``aejax.train`` would make of it)."""
    trial = self._write_numbers(slot, overrides)
    one = {k: jnp.asarray(v[slot]) for k, v in self.numbers.items()}
    keys = (self.keys.init, self.keys.shuffle, self.keys.noise, self.keys.eval)
    self.state, keys = self._put(self.state, keys, jnp.int32(trial.seed), one,
                                 jnp.int32(slot))
    self.keys = engine.Keys(*keys)
    return trial

  def copy(self, slot: int, source: int, overrides: dict) -> ml_collections.ConfigDict:
    """``slot`` goes on from ``source``'s parameters, optimizer state and step with the
    numbers of ``overrides`` (population-based training); compiled once, like ``fill``."""
    self.state = self._copy(self.state, jnp.int32(source), jnp.int32(slot))
    return self._write_numbers(slot, overrides)

  def train_epoch(self) -> dict[str, np.ndarray]:
    """Every slot trains one epoch; its metrics ``{name: [steps, M]}`` on the host."""
    self.state, history = self._epoch(self.state, self.keys.shuffle, self.keys.noise,
                                      self.numbers, self._images)
    return jax.device_get(history)

  def validate(self) -> dict[str, np.ndarray]:
    """Each slot's mean figures on the validation split, ``{name: [M]}``."""
    images, mask, n = self._val
    sums = jax.device_get(self._validate(self.state, self.keys.eval, self.numbers,
                                         images, mask))
    return {k: np.asarray(v, np.float64) / n for k, v in sums.items()}

  def variables(self, slot: int) -> dict:
    """Slot ``slot``'s Flax variables, on the host."""
    return jax.tree.map(lambda x: np.asarray(x[slot]), self.state.variables)

  def steps(self) -> np.ndarray:
    return np.asarray(self.state.step)


def _corruption(config, view):
  from aejax import corruption as corruption_lib  # noqa: PLC0415
  return corruption_lib.make(config.corruption.name, view.corruption.level)


def _padded(images: np.ndarray, batch_size: int):
  """``(chunks [C, B, ...], mask [C, B], n)`` of a split, padded to whole chunks
  (``code_stats.chunked``), on the device."""
  chunks, mask = code_stats.chunked(images, batch_size)
  return jax.device_put(chunks), jax.device_put(mask), len(images)
