"""A hyperparameter search as one program: Optuna's trials on a sweep's members axis.

    aejax.search(config, "runs/search", space="learning_rate=loguniform(1e-4,1e-2); "
                 "weight_decay=loguniform(1e-6,1e-2)", trials=32, slots=8)

``M`` slots train side by side as the members of a sweep (``aejax.sweep``): one
stacked state, one compiled epoch. Each slot trains one trial that Optuna's
ask-and-tell interface proposed (TPE by default). At each rung epoch the slots'
trials report their validation figure and Optuna's pruner decides; a pruned,
finished or failed (NaN) trial's slot is refilled at once with the next trial: that
slot's parameters, optimizer state, step and keys are made anew from the trial's
seed and its numbers replaced, while the other slots go on. The numbers are runtime
arrays of the compiled epoch, not constants, so nothing compiles again
(``Slots.traces`` counts the traces). ``strategy='pbt'`` trains the slots as a
population instead: at rung epochs the worst copy the best's state (``Slots.copy``)
and explore their numbers, each copy a new trial (``_Driver._loop_pbt``).

A trial trains exactly as ``aejax.train`` with its overrides would, on the search's
train split: its keys come from its own seed and each slot has its own step, which
drives its schedule, its batch order and its ``fold_in`` noise. The validation split
(``validation_fraction`` of the train set, a fixed permutation) is what trials are
judged on; the test set is used once, for the winner (``search.json``'s ``best``).

The study lives in Optuna's storage: a JournalStorage file in the workdir by
default, or ``storage`` (an RDB URL such as ``sqlite:///study.db`` or
``postgresql://user@host/db``, or a journal file's path) to share one study between
processes, each filling its own slots. SIGTERM, SIGINT or SIGUSR1 saves every slot
at the epoch reached and raises ``preemption.Stopped``; the rerun resumes those
trials bit for bit. Trials left running by a process killed outright are marked
failed in the study and queued again with the same numbers (so they re-run
deterministically).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import pathlib
import re
import shlex
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from aejax import checkpoint, code_stats, config as config_lib, data as data_lib, engine, losses
from aejax import models, preemption, sweep
from aejax import optimizer as optimizer_lib, step as step_lib
from aejax.objective import Objective, to_float

INSTALL = 'pip install "aejax[search]"'
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
            "qmc": "QMCSampler", "gp": "GPSampler"}
PRUNERS = ("median", "successive_halving", "hyperband", "none")
STRATEGIES = ("refill", "pbt")
PBT_RESAMPLE = 0.25  # A copied slot's number is drawn anew this often, else perturbed:
PBT_FACTORS = (0.8, 1.2)  # multiplied by one of these (the usual PBT explore step).
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
VALIDATION_FRACTION = 1 / 6  # MNIST's 60,000 train images: 50,000 to train, 10,000 to judge


class SearchError(config_lib.ConfigError):
  """A search the user asked for cannot run as given; the message says what to change."""


def _optuna():
  try:
    import optuna  # noqa: PLC0415 (an optional dependency)
  except ImportError:
    raise SearchError(f"the search needs Optuna: {INSTALL}") from None
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  return optuna


# ------------------------------------------------------------------- the space


def parse_space(spec: str, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``{key: optuna distribution}`` of ``"key=loguniform(a,b); key=choice(x,y)"``, the
  keys checked as a sweep's (only numbers the step reads may vary)."""
  optuna = _optuna()
  space = {}
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    key, _, text = (s.strip() for s in part.partition("="))
    match = re.fullmatch(r"(\w+)\((.*)\)", text)
    if not key or not match or match.group(1) not in DISTRIBUTIONS:
      raise SearchError(f"--space: {part!r} is not key=distribution; write e.g. "
                        "'learning_rate=loguniform(1e-4,1e-2)' with one of "
                        f"{', '.join(d + '(...)' for d in DISTRIBUTIONS)}.")
    if key in space:
      raise SearchError(f"--space names {key!r} twice.")
    space[key] = _distribution(optuna, key, match.group(1), match.group(2))
  if not space:
    raise SearchError("--space is empty; give e.g. 'learning_rate=loguniform(1e-4,1e-2)'.")
  try:
    sweep.check_keys(config, list(space), source="--space")
  except ValueError as e:
    raise SearchError(str(e)) from None
  return space


def _distribution(optuna, key: str, kind: str, args: str):
  where = f"--space: {key}={kind}({args})"
  try:
    values = [float(v) for v in args.split(",")]
  except ValueError:
    raise SearchError(f"{where}: its arguments are not numbers.") from None
  integral = all(v.is_integer() for v in values)
  if key == "seed" and (kind in ("loguniform", "uniform") or not integral):
    raise SearchError(f"{where}: a seed is an integer; use int(a,b) or choice(...).")
  if kind == "choice":
    return optuna.distributions.CategoricalDistribution(
        [int(v) for v in values] if key == "seed" else values)
  if len(values) != 2 or not values[0] < values[1]:
    raise SearchError(f"{where}: give two bounds, low < high.")
  low, high = values
  if kind == "int":
    if not integral:
      raise SearchError(f"{where}: int takes integer bounds.")
    return optuna.distributions.IntDistribution(int(low), int(high))
  if kind == "loguniform" and low <= 0:
    raise SearchError(f"{where}: loguniform needs bounds above 0.")
  return optuna.distributions.FloatDistribution(low, high, log=kind == "loguniform")


def space_string(space: dict[str, Any]) -> str:
  """The space as a canonical string: what a study records and compares."""
  return json.dumps({k: optuna_json(d) for k, d in space.items()}, sort_keys=True)


def optuna_json(distribution) -> str:
  return _optuna().distributions.distribution_to_json(distribution)


# ------------------------------------------------------------------- the slots


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


# ------------------------------------------------------------------- the study


def open_storage(url: str | None, workdir: pathlib.Path):
  """Optuna's storage: a JournalStorage file in ``workdir`` by default; ``url`` an RDB
  URL (``sqlite:///...``, ``postgresql://...``) or a journal file's path."""
  optuna = _optuna()
  from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415
  try:
    if url is None or "://" not in url:
      path = workdir / "study.journal" if url is None else pathlib.Path(url)
      if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
      return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(url)
  except Exception as e:  # noqa: BLE001 (any driver's error is the same one line)
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise SearchError(f"--storage={url}: cannot open the study's storage ({reason}); "
                      "give a reachable database URL or a journal file in an existing "
                      "folder.") from None


def _sampler(optuna, name: str, seed: int):
  if name not in SAMPLERS:
    raise SearchError(f"--sampler={name!r}: give one of {', '.join(SAMPLERS)}.")
  return getattr(optuna.samplers, SAMPLERS[name])(seed=seed)


def _pruner(optuna, name: str, rungs: list[int], num_epochs: int):
  if name == "median":
    return optuna.pruners.MedianPruner()
  if name == "successive_halving":
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0])
  if name == "hyperband":
    return optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=num_epochs)
  if name == "none":
    return optuna.pruners.NopPruner()
  raise SearchError(f"--pruner={name!r}: give one of {', '.join(PRUNERS)}.")


def _rungs(rungs, num_epochs: int) -> list[int]:
  """The rung epochs, ascending, each in 1..num_epochs; every epoch by default."""
  if rungs is None or rungs == "":
    return list(range(1, num_epochs + 1))
  try:
    out = sorted({int(r) for r in (rungs.split(",") if isinstance(rungs, str) else rungs)})
  except ValueError:
    raise SearchError(f"--rungs={rungs!r}: give epochs, e.g. 1,3,5.") from None
  if out[0] < 1 or out[-1] > num_epochs:
    raise SearchError(f"--rungs={rungs!r}: rungs are epochs from 1 to config.num_epochs "
                      f"({num_epochs}).")
  return out


def _check_strategy(options: dict, rungs: list[int], slots: int, num_epochs: int) -> None:
  if options["strategy"] not in STRATEGIES:
    raise SearchError(f"--strategy={options['strategy']!r}: give one of "
                      f"{', '.join(STRATEGIES)}.")
  if options["strategy"] != "pbt":
    return
  if slots < 2 or not 0 < options["quantile"] <= 0.5:
    raise SearchError(f"--strategy=pbt copies the best slots into the worst: give "
                      f"--slots ≥ 2 (not {slots}) and a quantile in (0, 0.5] "
                      f"(not {options['quantile']}).")
  if not [r for r in rungs if r < num_epochs]:
    raise SearchError(f"--strategy=pbt copies at rungs before the last epoch; --rungs="
                      f"{','.join(map(str, rungs))} has none below config.num_epochs="
                      f"{num_epochs}.")


def open_study(storage, name: str, space: dict, options: dict, sampler, pruner):
  """The study ``name`` in ``storage`` (made if new), refused if it was made for
  another space, objective or direction: one study, one question."""
  optuna = _optuna()
  try:
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                pruner=pruner, direction=options["direction"],
                                load_if_exists=True)
  except ValueError as e:
    raise SearchError(f"study {name!r}: {e}") from None
  identity = {"space": space_string(space), "objective": options["objective"],
              "direction": options["direction"]}
  saved = study.user_attrs.get("identity")
  if saved is None:
    study.set_user_attr("identity", identity)
  elif saved != identity:
    differs = ", ".join(k for k in identity if saved.get(k) != identity[k])
    raise SearchError(f"study {name!r} in this storage was made with another {differs} "
                      f"({saved[differs.split(', ')[0]]}); give the same, or another "
                      "--study name or --storage for this search.")
  return study


# ------------------------------------------------------------------- the search


@dataclasses.dataclass
class _Slot:
  trial: Any = None  # optuna.trial.Trial, None when the slot is free
  epochs: int = 0  # epochs this trial has trained


def search(config: ml_collections.ConfigDict, workdir: str, *, space: str, trials: int,
           slots: int, **options) -> dict:
  """``aejax.search``: searches ``space`` with ``trials`` Optuna trials, ``slots`` of
  them training at once as one program, and returns what ``search.json`` holds.

  ``options``: ``objective`` ('mse'; or 'loss', 'bce', a loss term, 'mse_denoised'),
  ``direction`` ('minimize'), ``sampler`` ('tpe', 'random', 'cmaes', 'qmc', 'gp'),
  ``pruner`` ('median', 'successive_halving', 'hyperband', 'none'), ``rungs`` (epochs,
  e.g. '1,3,5'; every epoch by default), ``storage`` (an URL or journal file; a
  journal in ``workdir`` by default), ``study`` (its name, 'search'), ``seed`` (the
  sampler's, 0), ``validation_fraction`` (1/6), ``plots`` (True), ``command``
  (how to name the config and overrides in the best trial's command), ``strategy``
  ('refill': prune and refill; 'pbt': population-based training of ``slots`` members,
  ``trials`` unused) and ``quantile`` (pbt's bottom and top fraction, 0.25).
  """
  options = {"objective": "mse", "direction": "minimize", "sampler": "tpe",
             "pruner": "median", "rungs": None, "storage": None, "study": "search",
             "seed": 0, "validation_fraction": VALIDATION_FRACTION, "plots": True,
             "command": None, "strategy": "refill", "quantile": 0.25, **options}
  config = config_lib.checked(config)
  optuna = _optuna()
  parsed = parse_space(space, config)
  if trials < 1 or slots < 1:
    raise SearchError(f"--trials={trials} and --slots={slots} must both be at least 1.")
  if options["direction"] not in ("minimize", "maximize"):
    raise SearchError(f"--direction={options['direction']!r}: minimize or maximize.")
  rungs = _rungs(options["rungs"], config.num_epochs)
  _check_strategy(options, rungs, slots, config.num_epochs)
  sampler = _sampler(optuna, options["sampler"], options["seed"])
  pruner = _pruner(optuna, options["pruner"], rungs, config.num_epochs)
  work = pathlib.Path(workdir).absolute()
  work.mkdir(parents=True, exist_ok=True)
  storage = open_storage(options["storage"], work)
  dataset = data_lib.load(config)
  held = split_validation(dataset, options["validation_fraction"])
  pool = Slots(config, held, slots, list(parsed))
  if options["objective"] not in pool.objectives():
    raise SearchError(f"--objective={options['objective']!r}: give one of "
                      f"{', '.join(pool.objectives())}.")
  study = open_study(storage, options["study"], parsed, options, sampler, pruner)
  driver = _Driver(pool, study, parsed, trials, work, options, rungs)
  with preemption.Signals() as signals:
    driver.resume()
    driver.loop(signals)
  return driver.finish(dataset, held)


class _Driver:
  """The search's loop: asks, fills, trains, reports, prunes, refills."""

  def __init__(self, pool: Slots, study, space, trials: int, work, options, rungs):
    self.pool, self.study, self.space, self.trials = pool, study, space, trials
    self.work, self.options, self.rungs = work, options, rungs
    self.slots = [_Slot() for _ in range(pool.size)]
    self.mngr = checkpoint.manager(work / "slots", max_to_keep=1)
    self.tick = 0  # epochs this workdir's slots have trained, over every segment
    self.best = None  # (value, trial number) of the best trial this workdir finished
    self.num_epochs = pool.base.num_epochs
    # pbt: each slot's copies, [{epoch, trial, from_slot, from_trial, params}]
    self.lineage: list[list[dict]] = [[] for _ in range(pool.size)]
    best = work / "best_trial.json"
    if best.exists():
      saved = json.loads(best.read_text())
      self.best = (saved["value"], saved["number"])

  # ----------------------------------------------------------------- trials

  def _count(self) -> int:
    return sum(1 for t in self.study.get_trials(deepcopy=False)
               if not t.user_attrs.get("lost"))

  def _start(self, slot: int, always: bool = False) -> bool:
    if not always and self._count() >= self.trials:
      return False
    trial = self.study.ask(self.space)
    trial.set_user_attr("workdir", str(self.work))
    trial.set_user_attr("slot", slot)
    self.pool.fill(slot, dict(trial.params))
    self.slots[slot] = _Slot(trial)
    logging.info("Trial %d in slot %d: %s", trial.number, slot, trial.params)
    return True

  def _end(self, slot: int, state: str, value: float | None = None, why: str = ""):
    optuna = _optuna()
    trial = self.slots[slot].trial
    if why:
      trial.set_user_attr("failed", why)
    self.study.tell(trial, value if state == "complete" else None,
                    state=getattr(optuna.trial.TrialState, state.upper()))
    logging.info("Trial %d %s after %d epochs%s.", trial.number, state,
                 self.slots[slot].epochs, "" if value is None else f": {value:.6g}")
    if state == "complete" and self._better(value):
      self._keep(slot, trial.number, value)
    self.slots[slot] = _Slot()

  def _better(self, value: float) -> bool:
    if self.best is None:
      return True
    return value < self.best[0] if self.options["direction"] == "minimize" else (
        value > self.best[0])

  def _keep(self, slot: int, number: int, value: float) -> None:
    """The best trial's variables, for its test figure at the end."""
    from flax import serialization  # noqa: PLC0415
    (self.work / "best_trial.msgpack").write_bytes(
        serialization.msgpack_serialize(self.pool.variables(slot)))
    (self.work / "best_trial.json").write_text(json.dumps({"number": number, "value": value}))
    self.best = (value, number)

  # ----------------------------------------------------------------- the loop

  def loop(self, signals: preemption.Signals) -> None:
    if self.options["strategy"] == "pbt":
      return self._loop_pbt(signals)
    for slot, s in enumerate(self.slots):
      if s.trial is None:
        self._start(slot)
    while any(s.trial is not None for s in self.slots):
      history = self.pool.train_epoch()
      self.tick += 1
      finite = np.all(np.isfinite(np.asarray(history["loss"])), axis=0)
      for s in self.slots:
        s.epochs += s.trial is not None
      due = [i for i, s in enumerate(self.slots)
             if s.trial is not None and (s.epochs in self.rungs or s.epochs == self.num_epochs)]
      values = self.pool.validate()[self.options["objective"]] if due else None
      for i, s in enumerate(self.slots):
        if s.trial is None:
          continue
        if not finite[i]:
          self._end(i, "fail", why=f"the loss became NaN or infinite in epoch {s.epochs}")
        elif i in due:
          self._report(i, float(values[i]))
      for i, s in enumerate(self.slots):
        if s.trial is None:
          self._start(i)
      self._stop_on(signals)
    return None

  def _stop_on(self, signals: preemption.Signals) -> None:
    if signals.received is not None:
      self._save()
      self.write()
      raise preemption.Stopped(signals.received, self.tick,
                               f"after {self.tick} epochs of the search's slots")

  # ----------------------------------------------------------------- pbt

  def _loop_pbt(self, signals: preemption.Signals) -> None:
    """Population-based training: the slots train together; at each rung before the
    last epoch the bottom quantile (and any failed slot) copies a top slot's state
    and explores its numbers. Each copy starts a new Optuna trial (its numbers, from
    then on); the trial it replaced is told pruned."""
    mine = [t for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get("workdir") == str(self.work) and not t.user_attrs.get("lost")]
    if self.tick == 0 and not mine:  # a new population (not a finished one run again)
      for slot in range(self.pool.size):
        self._start(slot, always=True)
    while any(s.trial is not None for s in self.slots):
      history = self.pool.train_epoch()
      self.tick += 1
      finite = np.all(np.isfinite(np.asarray(history["loss"])), axis=0)
      for i, s in enumerate(self.slots):
        s.epochs = self.tick
        if s.trial is not None and not finite[i]:
          self._end(i, "fail", why=f"the loss became NaN or infinite in epoch {self.tick}")
      if self.tick in self.rungs or self.tick == self.num_epochs:
        values = self.pool.validate()[self.options["objective"]]
        for i, s in enumerate(self.slots):
          if s.trial is None:
            continue
          if not math.isfinite(float(values[i])):
            self._end(i, "fail", why=f"the validation {self.options['objective']} is "
                      f"{values[i]} after epoch {self.tick}")
          elif self.tick == self.num_epochs:
            s.trial.report(float(values[i]), self.tick)
            self._end(i, "complete", float(values[i]))
          else:
            s.trial.report(float(values[i]), self.tick)
        if self.tick < self.num_epochs:
          self._exploit(values)
      self._stop_on(signals)

  def _exploit(self, values: np.ndarray) -> None:
    live = [i for i, s in enumerate(self.slots) if s.trial is not None]
    if not live:
      return
    ranked = sorted(live, key=lambda i: float(values[i]),
                    reverse=self.options["direction"] == "maximize")
    # At least one copy in a population of two or more: bottom and top never overlap.
    n = max(1, int(len(ranked) * self.options["quantile"])) if len(ranked) > 1 else 0
    top = ranked[:max(n, 1)]
    losers = [i for i, s in enumerate(self.slots) if s.trial is None] + ranked[len(ranked) - n:]
    rng = np.random.default_rng([self.options["seed"], self.tick])  # the same on a resume
    for slot in losers:
      source = top[int(rng.integers(len(top)))]
      parent = self.slots[source].trial
      params = self._explore(dict(parent.params), rng)
      if self.slots[slot].trial is not None:
        self._end(slot, "pruned")
      self.study.enqueue_trial(params, user_attrs={"copied_from": parent.number},
                               skip_if_exists=False)
      trial = self.study.ask(self.space)
      trial.set_user_attr("workdir", str(self.work))
      trial.set_user_attr("slot", slot)
      self.pool.copy(slot, source, dict(trial.params))
      self.slots[slot] = _Slot(trial, self.tick)
      self.lineage[slot].append({"epoch": self.tick, "trial": trial.number,
                                 "from_slot": source, "from_trial": parent.number,
                                 "params": dict(trial.params)})
      logging.info("Epoch %d: slot %d copies slot %d (trial %d) as trial %d: %s",
                   self.tick, slot, source, parent.number, trial.number, trial.params)

  def _explore(self, params: dict, rng: np.random.Generator) -> dict:
    """PBT's explore: each number (not the seed) drawn anew from its distribution with
    probability PBT_RESAMPLE, else multiplied by one of PBT_FACTORS, within bounds."""
    optuna = _optuna()
    out = {}
    for key, value in params.items():
      d = self.space[key]
      if key == "seed":
        out[key] = value
      elif isinstance(d, optuna.distributions.CategoricalDistribution):
        out[key] = (d.choices[int(rng.integers(len(d.choices)))]
                    if rng.random() < PBT_RESAMPLE else value)
      else:
        if rng.random() < PBT_RESAMPLE:
          low, high = (math.log(d.low), math.log(d.high)) if d.log else (d.low, d.high)
          new = rng.uniform(low, high)
          new = math.exp(new) if d.log else new
        else:
          new = value * PBT_FACTORS[int(rng.integers(len(PBT_FACTORS)))]
        new = min(max(new, d.low), d.high)
        out[key] = (int(round(new)) if isinstance(d, optuna.distributions.IntDistribution)
                    else float(new))
    return out

  def _report(self, slot: int, value: float) -> None:
    s = self.slots[slot]
    if not math.isfinite(value):
      return self._end(slot, "fail", why=f"the validation {self.options['objective']} is "
                       f"{value} after epoch {s.epochs}")
    s.trial.report(value, s.epochs)
    if s.epochs == self.num_epochs:
      return self._end(slot, "complete", value)
    if s.trial.should_prune():
      return self._end(slot, "pruned")
    return None

  # ----------------------------------------------------------------- resume

  def _save(self) -> None:
    state = self.pool.state
    meta = {"tick": self.tick, "steps": self.pool.steps().tolist(),
            "slots": [{"trial": None if s.trial is None else s.trial.number,
                       "epochs": s.epochs} for s in self.slots],
            "lineage": self.lineage}
    checkpoint.save(self.mngr, self.tick, state.variables, state.opt_state, meta)

  def resume(self) -> None:
    """Takes back the trials this workdir's slots trained when a signal stopped it
    (from the slots' checkpoint, bit for bit); trials it left running when killed
    outright are marked failed ('lost') and queued again with the same numbers."""
    optuna = _optuna()
    by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
    resumed = set()
    step = self.mngr.latest_step()
    if step is not None:
      state = self.pool.state
      variables, opt_state, meta = checkpoint.restore(self.mngr, step, state.variables,
                                                      state.opt_state)
      if len(meta["slots"]) != self.pool.size:
        raise SearchError(f"{self.work} holds a search of {len(meta['slots'])} slots; "
                          f"resume it with --slots={len(meta['slots'])}.")
      self.tick = meta["tick"]
      self.lineage = meta.get("lineage", self.lineage)
      for slot, saved in enumerate(meta["slots"]):
        frozen = by_number.get(saved["trial"])
        if frozen is None or frozen.state != optuna.trial.TrialState.RUNNING:
          continue
        self.pool.fill(slot, dict(frozen.params))
        # Optuna's own handle on a running trial (the constructor ask() uses).
        self.slots[slot] = _Slot(optuna.trial.Trial(self.study, frozen._trial_id),
                                 saved["epochs"])
        resumed.add(frozen.number)
      params = variables.pop("params")
      self.pool.state = self.pool.state.replace(
          step=jnp.asarray(meta["steps"], jnp.int32), params=params, opt_state=opt_state,
          model_state=variables)
      logging.info("Resumed %d trials of the search in their slots at step %s.",
                   len(resumed), meta["steps"])
    for frozen in by_number.values():
      if (frozen.state == optuna.trial.TrialState.RUNNING and frozen.number not in resumed
          and frozen.user_attrs.get("workdir") == str(self.work)):
        trial = optuna.trial.Trial(self.study, frozen._trial_id)
        trial.set_user_attr("lost", True)
        trial.set_user_attr("failed", "its process was killed before it finished")
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if self.options["strategy"] == "pbt":  # a member's state is its history: no rerun
          logging.info("Trial %d was left running by a killed process.", frozen.number)
          continue
        self.study.enqueue_trial(dict(frozen.params), user_attrs={"rerun_of": frozen.number})
        logging.info("Trial %d was left running by a killed process: queued again.",
                     frozen.number)

  # ----------------------------------------------------------------- results

  def records(self) -> list[dict]:
    out = []
    for t in self.study.get_trials(deepcopy=False):
      out.append({"number": t.number, "state": t.state.name.lower(), "params": t.params,
                  "value": t.value, "rungs": {str(k): v for k, v in
                                              sorted(t.intermediate_values.items())},
                  **{k: t.user_attrs[k] for k in ("workdir", "slot", "failed", "lost",
                                                  "rerun_of", "copied_from")
                     if k in t.user_attrs}})
    return out

  def write(self, best: dict | None = None) -> dict:
    options = self.options
    result = {"study": options["study"],
              "storage": options["storage"] or str(self.work / "study.journal"),
              "space": json.loads(space_string(self.space)),
              "objective": options["objective"], "direction": options["direction"],
              "sampler": options["sampler"], "pruner": options["pruner"],
              "rungs": self.rungs, "slots": self.pool.size, "trials_requested": self.trials,
              "strategy": options["strategy"],
              **({"lineage": self.lineage} if options["strategy"] == "pbt" else {}),
              "validation_fraction": options["validation_fraction"],
              "traces": dict(self.pool.traces), "trials": self.records(), "best": best}
    (self.work / "search.json").write_text(json.dumps(result, indent=2, default=float))
    return result

  def finish(self, dataset, held) -> dict:
    complete = [t for t in self.study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE"]
    best = None
    if complete:
      winner = self.study.best_trial
      best = {"number": winner.number, "params": winner.params, "value": winner.value,
              "command": self.command(winner.params), "test": None}
      if self.best is not None and self.best[1] == winner.number:
        best["test"] = self._test(winner.params, dataset, held)
      else:
        best["test_note"] = ("trained by another process of the study; run its command "
                             "for the test figures")
      logging.info("Best trial %d: validation %s %.6g; test %s.", winner.number,
                   self.options["objective"], winner.value,
                   best["test"] and best["test"].get("mse"))
    result = self.write(best)
    if self.options["plots"] and len(complete) > 1:
      _plots(self.study, self.work)
    return result

  def _test(self, params: dict, dataset, held) -> dict:
    """The winner's test figures, once: its variables on the untouched test set."""
    from flax import serialization  # noqa: PLC0415
    variables = serialization.msgpack_restore(
        (self.work / "best_trial.msgpack").read_bytes())
    config = sweep.member_config(self.pool.base, params)
    run = engine.setup(config, held, abstract=True)
    evaluator = run.evaluator(dataset.test_images, dataset.test_labels, dataset.scale)
    return evaluator.results(variables)["test"]

  def command(self, params: dict) -> str:
    """The best trial as an ``experiments.main`` command (on the whole train set)."""
    given = self.options["command"] or {}
    parts = ["python", "-m", "experiments.main",
             f"--config={given.get('config', '<config>')}",
             f"--workdir={self.work / 'best'}", *given.get("overrides", [])]
    parts += [f"--config.{k}={v!r}" if isinstance(v, float) else f"--config.{k}={v}"
              for k, v in params.items()]
    return shlex.join(parts)


def _plots(study, work: pathlib.Path) -> None:
  """Optuna's own figures of the study, as PNGs (a figure Optuna cannot draw for this
  study, e.g. importances of one parameter, is left out)."""
  import warnings  # noqa: PLC0415
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  from optuna.visualization import matplotlib as vis  # noqa: PLC0415
  for name, plot in (("optimization_history", vis.plot_optimization_history),
                     ("parallel_coordinate", vis.plot_parallel_coordinate),
                     ("param_importances", vis.plot_param_importances)):
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = plot(study)
      figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
      figure.savefig(work / f"{name}.png", dpi=100, bbox_inches="tight")
      plt.close(figure)
    except Exception as e:  # noqa: BLE001 (a figure is a nicety, never a failure)
      logging.info("No %s figure: %s", name, e)
