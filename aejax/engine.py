"""One wiring of a run: ``setup(config, dataset, mesh)`` builds everything a run needs.

``train.train_and_evaluate``, the benchmark and ``analysis.load_run`` all start here,
so they train, time and restore the same thing. ``validate_config`` checks every
value a run reads before any compute, naming the key.

Data parallelism: one mesh over every device of every process, with one axis,
``data`` (``make_mesh``; one device is a mesh of one, the same code path). The
parameters, optimizer state, keys and the uint8 train set are replicated; each batch
is sharded on ``data``, so XLA partitions the step by examples and inserts the
gradient's all-reduce. ``config.batch_size`` is the global batch.

Input (``config.input``): 'device' keeps the uint8 train set replicated on every
device and gathers each batch there; 'stream' reads batches from array_record files
in background threads (``aejax.data.stream``), each process only its rows of each
global batch, several batches per compiled call; 'auto' picks 'device' when the train
set fits comfortably in device memory. Both draw the epoch's order from the same
permutation, so they train on the same batches.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from aejax import corruption as corruption_lib, data as data_lib, evaluate, losses, models
from aejax import step as step_lib
from aejax.objective import Objective

# microbatch_size=0 ('auto') on a CPU: chunks whose largest activation stays under
# this many bytes. The conv net's 28×28×32 activations are 25 MB each at batch 256;
# in chunks of 16 (1.6 MB) its epoch ran 2.1× faster on a 2-core CPU (measured with
# `python -m experiments.benchmark --models=conv --microbatch_sizes=0,256
# --num_images=12800 --num_epochs=3`; chunks of 8 were as fast but compiled slower).
# GPUs and TPUs take the whole batch at once.
CPU_MICROBATCH_BYTES = 2 * 2**20
MAX_MICROBATCHES = 32  # beyond this the unrolled step compiles too slowly to pay
EPOCH_MODES = ("auto", "scan", "step")
INPUTS = ("auto", "device", "stream")
# input='auto' keeps the train set on the device when it takes at most this fraction
# of the smallest local device's memory (``bytes_limit``): the rest is left to the
# parameters, optimizer state and activations. A backend that reports no limit (CPU:
# the train set shares host memory anyway) counts as fitting.
DEVICE_INPUT_FRACTION = 0.25
# input='stream' feeds this many bytes of (global) batches per compiled call in
# 'scan' mode: e.g. 39 MNIST batches of 128 (3.9 MB). Bigger chunks dispatch less
# often; smaller ones start computing sooner after the reader.
STREAM_CHUNK_BYTES = 4 * 2**20


# ----------------------------------------------------------------------- config


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, key: str, value, what: str) -> None:
  if not ok:
    raise ValueError(f"config.{key} {what}, got {value!r}.")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the key for any value a run cannot use, before compute."""
  models.validate(config.model)
  losses.parse_weights(config.losses)
  _require(_finite(config.corruption.level), "corruption.level", config.corruption.level,
           "must be a finite number")
  corruption_lib.make(config.corruption.name, config.corruption.level)
  data_lib.validate_dataset_name(config.dataset)
  for key in ("num_epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
    value = config.get(key, 1)
    _require(isinstance(value, int) and not isinstance(value, bool) and value > 0, key, value,
             "must be a positive integer")
  _require(isinstance(config.seed, int) and not isinstance(config.seed, bool), "seed",
           config.seed, "must be an integer")
  _require(_finite(config.learning_rate) and config.learning_rate > 0, "learning_rate",
           config.learning_rate, "must be > 0")
  if config.schedule not in step_lib.SCHEDULES:
    raise ValueError(f"config.schedule={config.schedule!r} is unknown; "
                     f"choose one of {list(step_lib.SCHEDULES)}.")
  _require(_finite(config.warmup_epochs) and config.warmup_epochs >= 0, "warmup_epochs",
           config.warmup_epochs, "must be ≥ 0 (it is clamped to half of the run)")
  _require(_finite(config.final_lr_fraction) and 0 <= config.final_lr_fraction <= 1,
           "final_lr_fraction", config.final_lr_fraction, "must lie in [0, 1]")
  if config.schedule == "exponential":
    _require(config.final_lr_fraction > 0, "final_lr_fraction", config.final_lr_fraction,
             "must be > 0 for the exponential schedule")
  for key in ("adam_b1", "adam_b2"):
    _require(_finite(config[key]) and 0 <= config[key] < 1, key, config[key],
             "must lie in [0, 1)")
  _require(_finite(config.adam_eps) and config.adam_eps > 0, "adam_eps", config.adam_eps,
           "must be > 0 (Adam divides by sqrt(v) + eps)")
  weight_decay = config.get("weight_decay", 0.0)
  _require(_finite(weight_decay) and weight_decay >= 0, "weight_decay", weight_decay,
           "must be a finite number ≥ 0")
  microbatch = config.get("microbatch_size", 0)
  _require(isinstance(microbatch, int) and microbatch >= 0 and not (
      microbatch and config.batch_size % microbatch), "microbatch_size", microbatch,
      f"must be 0 (auto) or a divisor of batch_size={config.batch_size}")
  if config.epoch_mode not in EPOCH_MODES:
    raise ValueError(f"config.epoch_mode={config.epoch_mode!r}: use auto, scan or step.")
  if config.get("input", "device") not in INPUTS:
    raise ValueError(f"config.input={config.input!r} is unknown; use auto, device or stream.")


def validate_against_data(config, dataset, num_devices: int = 1) -> None:
  models.validate(config.model, dataset.image_shape)
  if config.batch_size % num_devices:
    raise ValueError(f"config.batch_size={config.batch_size} is the global batch and must "
                     f"divide by the {num_devices} devices it is sharded over; use a "
                     f"multiple of {num_devices}.")
  microbatch = config.get("microbatch_size", 0)
  if microbatch and microbatch % num_devices:
    raise ValueError(f"config.microbatch_size={microbatch} (examples per gradient chunk, "
                     f"over all devices) must divide by the {num_devices} devices.")
  if config.batch_size > dataset.n_train:
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the "
                     f"{dataset.n_train} training images of {dataset.name}.")


# ----------------------------------------------------------------- backend rules


def resolve_epoch_mode(config) -> str:
  """``config.epoch_mode``, or for 'auto' the family's CPU mode on XLA:CPU, else
  'scan' (on GPU/TPU the scan removes the per-step dispatch cost)."""
  if config.epoch_mode != "auto":
    return config.epoch_mode
  if jax.default_backend() == "cpu":
    return models.get(config.model.name).cpu_epoch_mode
  return "scan"


def resolve_microbatch_size(config, model, image_shape: tuple[int, ...],
                            num_devices: int = 1) -> int:
  """The chunk size of a train step's (global) batch: ``config.microbatch_size``, or
  for 0 ('auto') on a CPU the chunk whose largest activation on each device fits
  ``CPU_MICROBATCH_BYTES``: the largest divisor of the per-device batch that fits,
  times the device count (the whole batch on other backends)."""
  if config.get("microbatch_size", 0):
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
  chosen = config.get("input", "device")
  if chosen != "auto":
    return chosen, "set explicitly"
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


def chunk_batches(steps: int, batch_bytes: int, mode: str) -> int:
  """Batches per compiled call for input='stream': in 'scan' mode about
  ``STREAM_CHUNK_BYTES`` worth, as a divisor of the epoch's steps within a factor
  of two of that where there is one (a remainder chunk compiles a second program);
  one in 'step' mode."""
  if mode != "scan":
    return 1
  target = max(1, min(steps, STREAM_CHUNK_BYTES // max(batch_bytes, 1)))
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
    out = None if mesh is None else NamedSharding(mesh, P())
    return cls(*jax.jit(split, out_shardings=out)())


def make_mesh() -> jax.sharding.Mesh:
  """One mesh over every device of every process, with one axis, ``data``."""
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicate(mesh, array: np.ndarray) -> jax.Array:
  """A host array (the same on every process) as a global array replicated on every
  device of ``mesh``."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, NamedSharding(mesh, P()),
                                      lambda index: array[index])


def shard(mesh, array: np.ndarray, spec: P) -> jax.Array:
  """A host array (the same on every process) as a global array sharded by ``spec``."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, NamedSharding(mesh, spec),
                                      lambda index: array[index])


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run needs, built once from its config and data."""

  config: ml_collections.ConfigDict
  family: models.Family
  model: Any
  optimizer: optax.GradientTransformation
  objective: Objective
  corrupt: corruption_lib.Corruption
  steps_per_epoch: int
  n_train: int  # training images (an epoch uses steps_per_epoch * batch_size of them)
  epoch_mode: str  # resolved: 'scan' or 'step'
  microbatch_size: int  # resolved
  train_step: Callable  # (state, uint8 batch, key) -> (state, metrics)
  start_epoch: Callable  # (state, shuffle_key) -> order
  run_epoch: Callable  # (state, images, order, noise_key) -> (state, history)
  run_batches: Callable  # (state, batches, noise_key) -> (state, history): input='stream'
  input: str  # resolved: 'device' or 'stream'
  input_reason: str  # why (for 'auto')
  chunk_batches: int  # batches per compiled call when streaming
  state: step_lib.TrainState  # the initial state
  keys: Keys
  mesh: jax.sharding.Mesh

  def evaluator(self, test_images, test_labels=None) -> evaluate.Evaluator:
    return evaluate.Evaluator(self.objective, self.corrupt, test_images,
                              self.config.eval_batch_size, self.keys.eval, test_labels,
                              mesh=self.mesh)

  def put_images(self, images: np.ndarray) -> jax.Array:
    """The uint8 train set, replicated on every device (``config.input='device'``)."""
    return replicate(self.mesh, images)

  @property
  def local_rows(self) -> slice:
    """The rows of each global batch that this process's devices hold (and feed)."""
    sharding = NamedSharding(self.mesh, P("data"))
    slices = sorted({s[0].indices(self.config.batch_size)[:2] for s in
                     sharding.addressable_devices_indices_map((self.config.batch_size,))
                     .values()})
    if any(a[1] != b[0] for a, b in zip(slices, slices[1:])):
      raise ValueError(f"This process's devices hold rows {slices} of the batch, not one "
                       "block; streaming needs a mesh whose processes hold blocks.")
    return slice(slices[0][0], slices[-1][1])

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s batch order, int32 ``[steps, batch_size]``, computed on this
    host's CPU with the device path's function and key (``step.epoch_permutation``),
    so that streaming draws exactly the batches ``start_epoch`` gives the device path,
    on any number of hosts."""
    cpu = jax.local_devices(backend="cpu")[0]
    key = jax.device_put(self.keys.shuffle.addressable_data(0), cpu)
    permutation = jax.jit(step_lib.epoch_permutation, static_argnums=(2, 3))
    return np.asarray(permutation(key, epoch * self.steps_per_epoch, self.n_train,
                                  self.config.batch_size))

  def put_batches(self, local: np.ndarray):
    """This process's rows of K global batches, uint8 ``[K, rows, H, W, C]``, as what
    ``run_batches`` takes: one global ``[K, B, ...]`` array sharded on B ('scan'), or K
    global ``[B, ...]`` arrays ('step')."""
    batch = self.config.batch_size
    if self.epoch_mode == "scan":
      return jax.make_array_from_process_local_data(
          NamedSharding(self.mesh, P(None, "data")), local,
          (len(local), batch, *local.shape[2:]))
    sharding = NamedSharding(self.mesh, P("data"))
    return [jax.make_array_from_process_local_data(sharding, rows, (batch, *rows.shape[1:]))
            for rows in local]

  def open_stream(self, dataset, first_epoch: int = 0, iterator_state: dict | None = None):
    """``dataset``'s train split as a ``data.stream.Stream`` (grain, array_record),
    positioned at ``first_epoch``'s first batch, or where ``iterator_state`` (a
    checkpoint's) says."""
    from aejax.data import stream  # grain and TFDS: only when streaming
    folder = stream.array_record_folder(dataset)
    feed = stream.Stream(folder, stream.train_positions(folder, dataset), dataset.image_shape,
                         self.epoch_order, self.steps_per_epoch, self.local_rows,
                         self.chunk_batches, self.config.num_epochs)
    feed.start(first_epoch, iterator_state)
    return feed

  def stream_epoch(self, state, feed, epoch: int):
    """Trains epoch ``epoch`` on ``feed``'s chunks: ``(state, metrics on the host,
    stacked over steps)``. Each chunk's transfer and dispatch return at once, so the
    next chunk is fetched while the device trains on this one."""
    histories = []
    for chunk in feed.epoch(epoch):
      state, history = self.run_batches(state, self.put_batches(chunk), self.keys.noise)
      histories.append(history)
    return state, jax.tree.map(lambda *xs: np.concatenate(xs), *jax.device_get(histories))

  def record(self) -> dict:
    """What results.json says about where the run trained."""
    return {"backend": jax.default_backend(), "num_devices": self.mesh.size,
            "num_processes": jax.process_count(), "mesh": dict(self.mesh.shape),
            "input": self.input}


def setup(config: ml_collections.ConfigDict, dataset, mesh=None) -> Setup:
  """Builds a run's model, optimizer, objective, step, epoch functions, initial state
  and keys. ``dataset`` is a ``data.Dataset`` or, to restore a trained model without
  its data, a ``data.DataSpec`` (``image_shape``, ``n_train``). ``mesh``: the devices
  to train on (``make_mesh()``, every device of every process, by default).
  """
  mesh = make_mesh() if mesh is None else mesh
  validate_config(config)
  validate_against_data(config, dataset, mesh.size)
  image_shape = tuple(dataset.image_shape)
  family = models.get(config.model.name)
  model = models.build(config.model, image_shape, pixel_mean=dataset.pixel_mean)
  objective = Objective(model, config.model, losses.parse_weights(config.losses))
  corrupt = corruption_lib.make(config.corruption.name, config.corruption.level)
  steps_per_epoch = dataset.n_train // config.batch_size
  optimizer = step_lib.make_optimizer(config, steps_per_epoch)
  microbatch = resolve_microbatch_size(config, model, image_shape, mesh.size)
  train_step = step_lib.make_train_step(objective, optimizer, corrupt, microbatch)
  mode = resolve_epoch_mode(config)
  replicated = NamedSharding(mesh, P())
  start_epoch, run_epoch = step_lib.make_epoch_fns(
      train_step, dataset.n_train, config.batch_size, mode,
      batch_sharding=NamedSharding(mesh, P("data")), replicated=replicated)
  run_batches = step_lib.make_batch_fns(train_step, mode, NamedSharding(mesh, P("data")),
                                        replicated)
  image_bytes = math.prod(image_shape)  # uint8
  input_mode, input_reason = resolve_input(config, dataset.n_train * image_bytes)
  keys = Keys.from_seed(config.seed, mesh)

  def init(key):
    variables = models.init_variables(model, config.model, image_shape, key)
    params = variables.pop("params")
    return step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               opt_state=optimizer.init(params), model_state=variables)

  state = jax.jit(init, out_shardings=replicated)(keys.init)
  _check_objective(objective, state, image_shape)
  return Setup(config=config, family=family, model=model, optimizer=optimizer,
               objective=objective, corrupt=corrupt, steps_per_epoch=steps_per_epoch,
               n_train=dataset.n_train, epoch_mode=mode, microbatch_size=microbatch,
               train_step=train_step, start_epoch=start_epoch, run_epoch=run_epoch,
               run_batches=run_batches, input=input_mode, input_reason=input_reason,
               chunk_batches=chunk_batches(steps_per_epoch, config.batch_size * image_bytes,
                                           mode),
               state=state, keys=keys, mesh=mesh)


def _check_objective(objective: Objective, state: step_lib.TrainState, image_shape) -> None:
  """Traces the objective on shapes only, so that a loss term reading an array the
  model does not output fails here, before any compute."""
  x = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
  jax.eval_shape(objective, state.params, {"inputs": x, "target": x}, jax.random.key(0),
                 state.model_state)
