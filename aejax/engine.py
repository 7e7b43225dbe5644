"""One wiring of a run: ``setup(config, dataset, mesh)`` builds everything it needs.

``trainer.train_and_evaluate``, the benchmark and ``analysis.load_run`` all start here,
so they train, time and restore the same thing. The result, a ``Run``, holds the
built pieces (model, objective, corruption), the settings resolved for this backend
(``Plan``), the compiled functions (``Program``), the initial state and the keys.
How batches reach the step is ``aejax.inputs``'s job; the mesh is ``aejax.sharding``'s.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from aejax import config as config_lib, corruption as corruption_lib, evaluate, losses, models
from aejax import sharding, sweep
from aejax import optimizer as optimizer_lib, step as step_lib
from aejax.objective import Objective

# microbatch_size=0 ('auto') on a CPU: chunks whose largest activation stays under
# this many bytes. The conv net's 28×28×32 activations are 25 MB each at batch 256;
# in chunks of 16 (1.6 MB) its epoch ran 2.1× faster on a 2-core CPU (measured with
# `python -m experiments.benchmark --models=conv --microbatch_sizes=0,256
# --num_images=12800 --num_epochs=3`; chunks of 8 were as fast but compiled slower).
# GPUs and TPUs take the whole batch at once.
CPU_MICROBATCH_BYTES = 2 * 2**20
MAX_MICROBATCHES = 32  # beyond this the unrolled step compiles too slowly to pay
# input='auto' keeps the train set on the device when it takes at most this fraction
# of the smallest local device's memory (``bytes_limit``): the rest is left to the
# parameters, optimizer state and activations. A backend that reports no limit (CPU:
# the train set shares host memory anyway) counts as fitting.
DEVICE_INPUT_FRACTION = 0.25
# input='stream' feeds this many bytes of (global) batches per compiled call in
# 'scan' mode: e.g. 39 MNIST batches of 128 (3.9 MB). Bigger chunks dispatch less
# often; smaller ones start computing sooner after the reader.
STREAM_CHUNK_BYTES = 4 * 2**20
# input='device' trains an epoch in chunks of about this many steps: where a run may
# stop on a signal or save inside an epoch (aejax/preemption.py). An MNIST epoch
# (234 steps of 256) stays one call; a conv net's step-by-step epoch on a CPU is
# checked every few seconds.
DEVICE_CHUNK_STEPS = {"scan": 500, "step": 10}


# ----------------------------------------------------------------- backend rules


def resolve_epoch_mode(config) -> str:
  """``config.epoch_mode``, or for 'auto' the family's CPU mode on XLA:CPU, else
  'scan' (on GPU/TPU the scan removes the per-step dispatch cost)."""
  if config.epoch_mode != "auto":
    return config.epoch_mode
  if jax.default_backend() == "cpu":
    return models.get(config.model.name).cpu_epoch_mode
  return "scan"


def resolve_member_group(config, mesh, num_members: int) -> int:
  """How many of a sweep's members a step trains side by side (``step.over_members``):
  0 for all of them in one ``vmap``. ``config.sweep_vmap``, or for 0 ('auto') 1 on
  XLA:CPU for a family that runs slowly vmapped (``Family.cpu_vmap_members``), else
  0. Members in sequence need the members axis on one device: a mesh that spreads
  them runs them side by side."""
  across = mesh.shape.get(sharding.MEMBERS, 1)
  group = config.sweep_vmap
  if group and across > 1:
    raise ValueError(f"config.sweep_vmap={group} trains members one group after another "
                     f"on one device, but the mesh spreads them over {across} devices "
                     "(members on different devices already train side by side); use "
                     "--config.sweep_vmap=0.")
  if group and num_members % group:
    raise ValueError(f"config.sweep_vmap={group} must divide the sweep's {num_members} "
                     "members (its groups are all one size, one compiled step).")
  if not group and across == 1 and jax.default_backend() == "cpu" and not models.get(
      config.model.name).cpu_vmap_members:
    group = 1
  return 0 if group >= num_members else group


def resolve_microbatch_size(config, model, image_shape: tuple[int, ...],
                            num_devices: int = 1) -> int:
  """The chunk size of a train step's (global) batch: ``config.microbatch_size``, or
  for 0 ('auto') on a CPU the chunk whose largest activation on each device fits
  ``CPU_MICROBATCH_BYTES``: the largest divisor of the per-device batch that fits,
  times the device count (the whole batch on other backends)."""
  if config.microbatch_size:
    return config.microbatch_size
  batch = config.batch_size
  if jax.default_backend() != "cpu":
    return batch
  local = batch // num_devices
  activation = models.largest_activation_bytes(model, config.model, image_shape)
  fits = max(1, CPU_MICROBATCH_BYTES // activation)
  size = max(d for d in range(1, local + 1) if local % d == 0 and d <= fits)
  return batch if local // size > MAX_MICROBATCHES else size * num_devices


def resolve_input(config, train_bytes: int) -> tuple[str, str]:
  """``(input, why)``: ``config.input``, or for 'auto' 'device' when the uint8 train
  set (``train_bytes``, replicated on every device) takes at most
  ``DEVICE_INPUT_FRACTION`` of the smallest local device's memory, else 'stream'."""
  if config.input != "auto":
    return config.input, "set explicitly"
  limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
  if not all(limits):
    return "device", (f"the train set ({train_bytes / 2**20:.0f} MiB) stays in host-backed "
                      f"{jax.default_backend()} device memory, which reports no limit")
  limit = min(limits)
  fits = train_bytes <= DEVICE_INPUT_FRACTION * limit
  return ("device" if fits else "stream"), (
      f"the train set takes {train_bytes / 2**20:.0f} MiB, "
      f"{'at most' if fits else 'more than'} {DEVICE_INPUT_FRACTION:.0%} of the "
      f"{limit / 2**30:.1f} GiB of device memory")


def chunk_steps(config, steps: int, batch_bytes: int, mode: str, input_mode: str) -> int:
  """The steps of a chunk: what runs between two points where a run may stop on a
  signal or save a checkpoint inside an epoch, one compiled call in 'scan' mode.

  For input='stream' in 'scan' mode, about ``STREAM_CHUNK_BYTES`` of batches (one
  batch a call in 'step' mode); for input='device', about ``DEVICE_CHUNK_STEPS``; at
  most ``config.checkpoint_every_steps``. Epochs are cut from their first step, in
  chunks of a divisor of the epoch's steps within a factor of two of that target
  where there is one; otherwise the epoch's last chunk is shorter (in 'scan' mode a
  second program: the same arithmetic, as each step gathers its batch by its number).
  """
  if input_mode == "stream":
    if mode != "scan":
      return 1
    target = STREAM_CHUNK_BYTES // max(batch_bytes, 1)
  else:
    target = DEVICE_CHUNK_STEPS[mode]
  if config.checkpoint_every_steps:
    target = min(target, config.checkpoint_every_steps)
  target = max(1, min(steps, target))
  below = max(d for d in range(1, target + 1) if steps % d == 0)
  if 2 * below >= target:
    return below
  above = min(d for d in range(target, steps + 1) if steps % d == 0)
  return above if above <= 2 * target else target


# ------------------------------------------------------------------- the setup


@dataclasses.dataclass(frozen=True)
class Keys:
  """The run's random streams, split once from ``config.seed``."""
  init: jax.Array  # parameters
  shuffle: jax.Array  # epoch order: fold_in(shuffle, epoch)
  noise: jax.Array  # corruption and model sampling: fold_in(noise, step)
  eval: jax.Array  # the test set's corruption and sampling

  @classmethod
  def from_seed(cls, seed: int, mesh=None) -> "Keys":
    """Made inside ``jit`` with a replicated output: a key cannot be ``device_put``
    onto a sharding that spans processes."""
    split = lambda: tuple(jax.random.split(jax.random.key(seed), 4))
    out = None if mesh is None else sharding.replicated(mesh)
    return cls(*jax.jit(split, out_shardings=out)())

  @classmethod
  def from_seeds(cls, seeds: list[int], layout: sharding.Layout) -> "Keys":
    """Each member's keys, as ``from_seed`` makes them, stacked on the members axis."""
    split = jax.vmap(lambda seed: tuple(jax.random.split(jax.random.key(seed), 4)))
    seeds = jax.numpy.asarray(seeds, jax.numpy.int32)
    return cls(*jax.jit(split, out_shardings=layout.state)(seeds))


@dataclasses.dataclass(frozen=True)
class Members:
  """A sweep's members (``aejax.sweep``): each one's overrides and config, and the
  swept numbers the step reads, ``{dotted key: [M]}``."""
  overrides: list[dict]
  configs: list[ml_collections.ConfigDict]
  numbers: dict[str, Any]

  @property
  def size(self) -> int:
    return len(self.overrides)


@dataclasses.dataclass(frozen=True)
class Plan:
  """The run's settings, resolved for this data, backend and mesh."""
  n_train: int  # training images (an epoch uses steps_per_epoch * batch_size of them)
  steps_per_epoch: int
  epoch_mode: str  # 'scan' or 'step'
  microbatch_size: int
  input: str  # 'device' or 'stream'
  input_reason: str  # why (for config.input='auto')
  chunk_steps: int  # steps between the points where a run may stop or save
  member_group: int = 0  # a sweep's members side by side per step; 0: all (one vmap)
  bounded: bool = True  # the data lies in [0, 1]: PSNR and BCE are reported
  members: Members | None = None  # a sweep's; None for one model


@dataclasses.dataclass(frozen=True)
class Program:
  """The compiled functions of a run (``step.make_epoch_fns``, ``make_batch_fns``)."""
  train_step: Callable  # (state, uint8 batch, key) -> (state, metrics)
  start_epoch: Callable  # (state, shuffle_key) -> order
  run_chunk: Callable  # (state, images, order, noise_key, steps) -> (state, history)
  run_batches: Callable  # (state, batches, noise_key) -> (state, history)


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything a run needs, built once from its config and data."""
  config: ml_collections.ConfigDict
  family: models.Family
  model: Any
  objective: Objective
  corrupt: corruption_lib.Corruption
  plan: Plan
  program: Program
  state: step_lib.TrainState  # the initial state
  keys: Keys
  mesh: jax.sharding.Mesh

  def evaluator(self, test_images, test_labels=None, scale=None) -> evaluate.Evaluator:
    return evaluate.Evaluator(self, test_images, test_labels, scale)

  def member(self, i: int) -> "Run":
    """Member ``i`` of a sweep as a run of its own (its config, objective, corruption
    and keys) on as many devices as one member's batch is split over, to evaluate it
    as its own run would. Its ``state`` is None: a member's variables are a slice of
    the sweep's state (``trainer.member_variables``)."""
    config = self.plan.members.configs[i]
    mesh = sharding.make_mesh(self.mesh.shape[sharding.DATA])
    return dataclasses.replace(
        self, config=config, objective=Objective(self.model, config.model,
                                                 losses.parse_weights(config.losses)),
        corrupt=corruption_lib.make(config.corruption.name, config.corruption.level),
        plan=dataclasses.replace(self.plan, members=None), state=None,
        keys=Keys.from_seed(config.seed, mesh), mesh=mesh)

  def record(self) -> dict:
    """What results.json says about where and how the run trained."""
    return {"epoch_mode": self.plan.epoch_mode, "microbatch_size": self.plan.microbatch_size,
            "backend": jax.default_backend(), "num_devices": self.mesh.size,
            "num_processes": jax.process_count(), "mesh": dict(self.mesh.shape),
            "input": self.plan.input, "chunk_steps": self.plan.chunk_steps,
            **({} if self.plan.members is None else {"member_group": self.plan.member_group})}


def setup(config: ml_collections.ConfigDict, dataset, mesh=None, abstract: bool = False,
          checked: bool = False) -> Run:
  """Builds a run's model, objective, compiled functions, initial state and keys.

  ``dataset`` is a ``data.Dataset`` or, to restore a trained model without its data,
  a ``data.DataSpec`` (``image_shape``, ``n_train``). ``mesh``: the devices to train
  on (every device of every process by default: ``sharding.make_mesh()``, or for a
  sweep ``sharding.make_member_mesh``). ``abstract``: the initial state as shapes,
  dtypes and shardings only (``jax.ShapeDtypeStruct``s, nothing computed), as the
  target a checkpoint is restored into. ``checked``: the config has passed
  ``config.validate`` already (``trainer.train_and_evaluate``'s one pass), so it is not
  checked again; its checks against the data and the devices still run.
  """
  if not checked:
    config_lib.validate(config)
  members = _members(config)
  mesh = default_mesh(config) if mesh is None else mesh
  config_lib.validate_against_data(config, dataset, mesh.shape[sharding.DATA])
  image_shape = tuple(dataset.image_shape)
  model = models.build(config.model, image_shape, pixel_mean=dataset.pixel_mean,
                       unbounded=not dataset.bounded)
  steps_per_epoch = dataset.n_train // config.batch_size
  mode = resolve_epoch_mode(config)
  image_bytes = math.prod(image_shape) * (4 if len(image_shape) == 1 else 1)  # f32 vectors
  input, input_reason = resolve_input(config, dataset.n_train * image_bytes)
  plan = Plan(dataset.n_train, steps_per_epoch, mode,
              resolve_microbatch_size(config, model, image_shape, mesh.shape[sharding.DATA]),
              input, input_reason,
              chunk_steps(config, steps_per_epoch, config.batch_size * image_bytes, mode,
                          input),
              0 if members is None else resolve_member_group(config, mesh, members.size),
              dataset.bounded, members)
  if members is not None and plan.input == "stream":
    raise ValueError(f"config.sweep trains on the train set on the device, but "
                     f"config.input={config.input!r} chose streaming ({plan.input_reason}); "
                     "sweep a smaller train set, or train the members as runs of their own.")
  layout = sharding.Layout(mesh, members is not None)

  def pieces(numbers: dict):
    """The objective, optimizer and corruption of the config with ``numbers`` (a
    member's, traced) in place of its own."""
    view = sweep.Numbers(config, numbers)
    return (Objective(model, config.model, view.loss_weights()),
            optimizer_lib.make_optimizer(view, steps_per_epoch),
            corruption_lib.make(config.corruption.name, view.corruption.level))

  def train_step(state, batch, key, numbers=None):
    objective, optimizer, corrupt = pieces(numbers or {})
    return step_lib.make_train_step(objective, optimizer, corrupt,
                                    plan.microbatch_size)(state, batch, key)

  def init(key, numbers=None):
    variables = models.init_variables(model, config.model, image_shape, key)
    params = variables.pop("params")
    return step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               opt_state=pieces(numbers or {})[1].init(params),
                               model_state=variables)

  numbers = None if members is None else {
      key: jax.device_put(value, layout.state) for key, value in members.numbers.items()}
  objective, _, corrupt = pieces({})
  program = Program(train_step, *step_lib.make_epoch_fns(
      train_step, dataset.n_train, config.batch_size, mode, layout, numbers,
      plan.member_group),
      step_lib.make_batch_fns(train_step, mode, layout))
  if members is None:
    keys = Keys.from_seed(config.seed, mesh)
    make_state = jax.jit(init, out_shardings=layout.state)
  else:
    _check_memory(members.size, model, config, image_shape)
    keys = Keys.from_seeds([c.seed for c in members.configs], layout)
    make_state = jax.jit(step_lib.over_members(init, numbers, (0,)),
                         out_shardings=layout.state)
  state = (jax.eval_shape if abstract else (lambda f, *a: f(*a)))(make_state, keys.init)
  _check_objective(objective, jax.eval_shape(init, jax.random.key(0)), image_shape)
  return Run(config, models.get(config.model.name), model, objective, corrupt, plan,
             program, state, keys, mesh)


def default_mesh(config, num_devices: int | None = None) -> jax.sharding.Mesh:
  """The first ``num_devices`` devices (all by default) as the run's mesh: ``data``
  alone, or ``members`` × ``data`` for a sweep."""
  members = sweep.members(config)
  if members:
    return sharding.make_member_mesh(len(members), num_devices)
  return sharding.make_mesh(num_devices)


def _members(config) -> Members | None:
  overrides = sweep.members(config)
  if not overrides:
    return None
  configs = [sweep.member_config(config, o) for o in overrides]
  return Members(overrides, configs, sweep.numbers(configs, list(overrides[0])))


def _check_memory(num_members: int, model, config, image_shape) -> None:
  """Refuses a sweep whose members' parameters, optimizer state and activations would
  not fit the smallest device's memory (or the host's, on a CPU), saying how many
  would. An estimate: four copies of the parameters (themselves, gradients, Adam's
  two moments) and every layer's output for a batch, kept for the backward pass."""
  shapes = jax.eval_shape(lambda: models.init_variables(
      model, config.model, image_shape, jax.random.key(0)))
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
  activations = models.activation_bytes(model, config.model, image_shape) * config.batch_size
  per_member = 4 * param_bytes + 2 * activations
  limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
  if all(limits):
    limit, where = min(limits), "the smallest device's memory"
  else:
    import os
    limit, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host memory"
  if num_members * per_member > 0.8 * limit:
    fit = int(0.8 * limit // per_member)
    raise ValueError(
        f"config.sweep makes {num_members} members of about {per_member / 2**20:.0f} MiB "
        f"each (parameters, optimizer state, activations): more than 80% of {where} "
        f"({limit / 2**30:.1f} GiB). At most {fit} members fit; sweep fewer at once.")


def _check_objective(objective: Objective, state: step_lib.TrainState, image_shape) -> None:
  """Traces the objective on shapes only, so that a loss term reading an array the
  model does not output fails here, before any compute."""
  x = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
  jax.eval_shape(objective, state.params, {"inputs": x, "target": x}, jax.random.key(0),
                 state.model_state)
