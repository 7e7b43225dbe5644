"""Training: the train state, the pure train step, the epoch loop, train_and_evaluate.

The train step is ``(state, batch, key) -> (state, metrics)``: jit-compiled, pure,
with its randomness from ``jax.random.fold_in(key, state.step)`` so that a resumed
run draws the same noise at the same step. The loss is the weighted sum of the
pure terms in ``losses.py`` that the config names; each is reported in the metrics.

The dataset lives on the device as uint8 and is scaled to [0, 1] there. An epoch's
batch order is a permutation drawn on the device from ``fold_in(seed, epoch)``,
and each step picks its batch by ``state.step``, so there is no host↔device
traffic inside an epoch. The epoch runs either as one compiled ``lax.scan`` or as
one compiled step per batch (``config.epoch_mode``; 'auto' picks per backend and
model, see ``EPOCH_MODE_AUTO``). On a CPU a batch's gradient is computed in chunks
that fit the caches (``config.microbatch_size``).
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from aejax import checkpoint, corruption as corruption_lib, data as data_lib
from aejax import losses, models, evaluate as evaluate_lib, plots

# epoch_mode='auto' by (backend, model name); anything else runs the epoch as one
# lax.scan. Measured with `python -m experiments.benchmark --epoch_modes=step,scan`
# (see README): on XLA:CPU a conv net inside any loop ran several times slower
# than one jitted step per batch, while the dense models' epoch was 1.2-1.3× faster
# as a scan; on GPU/TPU the scan removes the per-step dispatch cost.
EPOCH_MODE_AUTO = {("cpu", "conv"): "step"}
# microbatch_size=0 ('auto') on a CPU: chunks whose largest activation stays under
# this many bytes. The conv net's 28×28×32 activations are 25 MB each at batch 256;
# in chunks of 16 (1.6 MB) its epoch ran 2.1× faster on a 2-core CPU (measured with
# `python -m experiments.benchmark --models=conv --microbatch_sizes=0,256
# --num_images=12800 --num_epochs=3`; chunks of 8 were as fast but compiled slower).
# GPUs and TPUs take the whole batch at once.
CPU_MICROBATCH_BYTES = 2 * 2**20
MAX_MICROBATCHES = 32  # beyond this the unrolled step compiles too slowly to pay
PROGRESS_SECONDS = 30.0


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the message names the step and the term."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: Any
  opt_state: Any


# ----------------------------------------------------------------------- config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the key for any value a run cannot use, before compute."""
  models.validate(config.model)
  losses.parse_weights(config.losses)
  corruption_lib.make(config.corruption.name, config.corruption.level)
  data_lib.validate_dataset_name(config.dataset)
  for key in ("num_epochs", "batch_size", "eval_batch_size"):
    if not isinstance(config[key], int) or config[key] <= 0:
      raise ValueError(f"config.{key} must be a positive integer, got {config[key]!r}.")
  if not config.learning_rate > 0 or not math.isfinite(config.learning_rate):
    raise ValueError(f"config.learning_rate must be > 0, got {config.learning_rate}.")
  if config.schedule not in SCHEDULES:
    raise ValueError(f"config.schedule={config.schedule!r} is unknown; "
                     f"choose one of {list(SCHEDULES)}.")
  if config.schedule == "cosine" and not 0 <= config.warmup_epochs < config.num_epochs:
    raise ValueError(f"config.warmup_epochs must be ≥ 0 and below num_epochs="
                     f"{config.num_epochs} (the cosine decay follows the warm-up), got "
                     f"{config.warmup_epochs}; lower --config.warmup_epochs.")
  if not config.get("weight_decay", 0.0) >= 0:
    raise ValueError(f"config.weight_decay must be >= 0, got {config.weight_decay}.")
  microbatch = config.get("microbatch_size", 0)
  if not isinstance(microbatch, int) or microbatch < 0 or (
      microbatch and config.batch_size % microbatch):
    raise ValueError(f"config.microbatch_size must be 0 (auto) or a divisor of "
                     f"batch_size={config.batch_size}, got {microbatch!r}.")
  if config.epoch_mode not in ("auto", "scan", "step"):
    raise ValueError(f"config.epoch_mode={config.epoch_mode!r}: use auto, scan or step.")


def validate_against_data(config, dataset: data_lib.Dataset) -> None:
  models.validate(config.model, dataset.image_shape)
  if config.batch_size > len(dataset.train_images):
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the "
                     f"{len(dataset.train_images)} training images of {dataset.name}.")


# ------------------------------------------------------------------- optimizer

SCHEDULES = ("constant", "cosine")


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam with the config's learning-rate schedule.

  'constant' is Keras's default; 'cosine' warms up linearly for
  ``warmup_epochs`` then decays to ``learning_rate * final_lr_fraction``.
  """
  total = config.num_epochs * steps_per_epoch
  if config.schedule == "constant":
    lr = config.learning_rate
  else:
    lr = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate,
        warmup_steps=int(config.warmup_epochs * steps_per_epoch),
        decay_steps=total, end_value=config.learning_rate * config.final_lr_fraction)
  # Decoupled weight decay (AdamW) only where a config has the key (deep.py), so
  # every other config, and the runs it saved, keep plain Adam's state.
  weight_decay = config.get("weight_decay", 0.0)
  if weight_decay:
    return optax.adamw(lr, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps,
                       weight_decay=weight_decay)
  return optax.adam(lr, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)


# ------------------------------------------------------------------- the step


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1], on the device."""
  return images.astype(jnp.float32) / 255.0


def make_loss_fn(model: models.Autoencoder, weights: dict[str, float]) -> Callable:
  """``loss_fn(params, inputs, targets) -> (total, terms)``; float [B, H, W, C] each.

  ``inputs`` is what the encoder sees (the corrupted images for a denoising model),
  ``targets`` what the decoder should give back. Each term is averaged over the batch,
  so the loss of a batch is the mean of its equal-sized chunks' losses.
  """
  terms = {name: losses.get(name) for name in weights}

  def loss_fn(params, inputs, targets):
    reconstruction, code = model.apply({"params": params}, inputs)
    arrays = {"reconstruction": reconstruction, "target": targets, "code": code,
              "inputs": inputs}
    values = {name: term(arrays).mean() for name, term in terms.items()}
    total = sum(weights[name] * values[name] for name in terms)
    return total, values

  return loss_fn


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation,
                    corrupt: corruption_lib.Corruption = corruption_lib.identity,
                    microbatch_size: int | None = None) -> Callable:
  """``train_step(state, batch, key) -> (state, metrics)``; batch uint8 [B, H, W, C].

  Pure: jit it, scan it, shard it. ``corrupt(key, images)`` makes the encoder's input
  from the whole batch, with ``key`` folded with the step number. ``metrics`` holds
  the total 'loss' and each term.

  ``microbatch_size`` (a divisor of B) computes the batch's gradient as the mean of
  its chunks' gradients, one chunk after another: the same update up to float
  rounding (the noise is drawn for the whole batch first), with each chunk's
  activations small enough to stay in a CPU's caches. The chunks are unrolled, not
  a ``lax.scan``: on XLA:CPU a conv net's step ran several times slower inside a loop
  (see ``resolve_microbatch_size``).
  """

  def train_step(state: TrainState, batch: jax.Array, key: jax.Array):
    key = jax.random.fold_in(key, state.step)
    targets = to_float(batch)
    inputs = corrupt(key, targets)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    size = microbatch_size or len(batch)
    if len(batch) % size:
      raise ValueError(f"microbatch_size={size} does not divide the batch of {len(batch)}.")
    chunks = [grad_fn(state.params, inputs[i:i + size], targets[i:i + size])
              for i in range(0, len(batch), size)]
    (total, values), grads = jax.tree.map(lambda *xs: sum(xs) / len(xs), *chunks)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": total, **values}

  return train_step


def init_state(model, optimizer, image_shape, key) -> TrainState:
  params = model.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=optimizer.init(params))


# ------------------------------------------------------------------ the epoch


def epoch_permutation(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
  """The batch order of the epoch that ``step`` falls in: int32 [steps, batch_size].

  Depends only on the epoch number, so a resumed run sees the same order.
  """
  steps = n // batch_size
  epoch = step // steps
  perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
  return perm[: steps * batch_size].reshape(steps, batch_size)


def make_epoch_fns(train_step: Callable, n: int, batch_size: int, mode: str):
  """Returns ``(start_epoch, run_epoch)``, both compiled.

  ``start_epoch(state, shuffle_key) -> order``; ``run_epoch(state, images, order, key)
  -> (state, metrics stacked over steps)``. In 'scan' mode run_epoch is one call; in
  'step' mode it dispatches one compiled step per batch (no host sync in between).
  """
  steps = n // batch_size
  start_epoch = jax.jit(lambda state, key: epoch_permutation(key, state.step, n, batch_size))

  def indexed_step(state, images, order, key):
    batch = images[order[state.step % steps]]
    return train_step(state, batch, key)

  if mode == "scan":
    @functools.partial(jax.jit, donate_argnums=0)
    def run_epoch(state, images, order, key):
      return jax.lax.scan(lambda s, _: indexed_step(s, images, order, key), state,
                          length=steps)
    return start_epoch, run_epoch

  compiled_step = jax.jit(indexed_step, donate_argnums=0)

  def run_epoch(state, images, order, key):
    history = []
    last_report = time.perf_counter()
    for i in range(steps):
      state, metrics = compiled_step(state, images, order, key)
      history.append(metrics)
      # Long epochs (a conv net on a CPU) report progress every ~30 s; waiting for one
      # scalar that often costs nothing measurable. An explicit device_get, the one
      # transfer an epoch makes on purpose (jax.transfer_guard allows only those).
      if time.perf_counter() - last_report > PROGRESS_SECONDS and i + 1 < steps:
        loss = float(jax.device_get(metrics["loss"]))
        last_report = time.perf_counter()
        logging.info("  step %d/%d of the epoch  loss %.5f", i + 1, steps, loss)
    return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

  return start_epoch, run_epoch


def check_finite(history: dict[str, np.ndarray], first_step: int) -> None:
  """Raises NonFiniteLossError naming the first step and term that went NaN/inf."""
  for i in range(len(history["loss"])):
    bad = [name for name, values in history.items() if not np.isfinite(values[i])]
    if bad:
      name = next((b for b in bad if b != "loss"), "loss")
      raise NonFiniteLossError(
          f"Loss term {name!r} became {history[name][i]} at step {first_step + i + 1}. "
          "Training stopped; the last good checkpoint is kept. Try a lower "
          "--config.learning_rate or check the data.")


# ------------------------------------------------------------------- the run


def resolve_epoch_mode(config) -> str:
  if config.epoch_mode != "auto":
    return config.epoch_mode
  return EPOCH_MODE_AUTO.get((jax.default_backend(), config.model.name), "scan")


def resolve_microbatch_size(config, model: models.Autoencoder,
                            image_shape: tuple[int, ...]) -> int:
  """The chunk size of a train step's batch: ``config.microbatch_size``, or for 0
  ('auto') on a CPU the largest divisor of the batch size whose largest activation
  fits ``CPU_MICROBATCH_BYTES`` (the whole batch on other backends)."""
  if config.get("microbatch_size", 0):
    return config.microbatch_size
  batch = config.batch_size
  if jax.default_backend() != "cpu":
    return batch
  fits = max(1, CPU_MICROBATCH_BYTES // models.largest_activation_bytes(model, image_shape))
  size = max(d for d in range(1, batch + 1) if batch % d == 0 and d <= fits)
  return size if batch // size <= MAX_MICROBATCHES else batch


class _Workdir:
  """The files a run writes: config.json, metrics.jsonl, TensorBoard events."""

  def __init__(self, path: pathlib.Path):
    self.path = path
    path.mkdir(parents=True, exist_ok=True)
    self.metrics_path = path / "metrics.jsonl"
    self._tb = None

  # Keys a resumed run may change: more epochs, and how the same arithmetic is laid
  # out (equal up to float rounding; absent from runs saved before they existed).
  RESUMABLE_KEYS = ("num_epochs", "epoch_mode", "microbatch_size", "eval_batch_size")

  def check_config(self, config) -> None:
    """Refuses to continue a run made with a different config (``RESUMABLE_KEYS``
    excepted)."""
    saved_path = self.path / "config.json"
    if saved_path.exists():
      saved = json.loads(saved_path.read_text())
      now = json.loads(config.to_json())
      diff = sorted(k for k in set(saved) | set(now)
                    if k not in self.RESUMABLE_KEYS and saved.get(k) != now.get(k))
      if diff:
        raise ValueError(
            f"{self.path} holds a run made with a different config (keys {diff} "
            "differ). Use a new --workdir, or delete this one to start over.")
    saved_path.write_text(config.to_json(indent=2) + "\n")

  def keep_metrics_up_to(self, epoch: int) -> None:
    """Drops lines past the restored checkpoint, so the file matches the state."""
    if self.metrics_path.exists():
      lines = self.metrics_path.read_text().splitlines()
      kept = [l for l in lines if l.strip() and json.loads(l)["epoch"] <= epoch]
      self.metrics_path.write_text("".join(l + "\n" for l in kept))

  def log_epoch(self, record: dict) -> None:
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is None:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(str(self.path / "tensorboard"))
    for split in ("train", "test"):
      for name, value in record[split].items():
        self._tb.add_scalar(f"{split}/{name}", value, record["step"])
    self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the run in ``workdir``, evaluates it, writes its results."""
  validate_config(config)
  dataset = data_lib.load(config)
  validate_against_data(config, dataset)
  work = _Workdir(pathlib.Path(workdir))
  work.check_config(config)

  model = models.build(config.model, dataset.image_shape,
                       pixel_mean=dataset.train_images.mean(0) / 255.0)
  weights = losses.parse_weights(config.losses)
  corrupt = corruption_lib.make(config.corruption.name, config.corruption.level)
  n_train = len(dataset.train_images)
  steps_per_epoch = n_train // config.batch_size
  optimizer = make_optimizer(config, steps_per_epoch)
  microbatch = resolve_microbatch_size(config, model, dataset.image_shape)
  train_step = make_train_step(make_loss_fn(model, weights), optimizer, corrupt, microbatch)
  mode = resolve_epoch_mode(config)
  start_epoch, run_epoch = make_epoch_fns(train_step, n_train, config.batch_size, mode)

  root = jax.random.key(config.seed)
  init_key, shuffle_key, noise_key, eval_key = jax.random.split(root, 4)
  state = init_state(model, optimizer, dataset.image_shape, init_key)
  mngr = checkpoint.manager(workdir)
  restored = checkpoint.restore_latest(mngr, state)
  if restored is not None:
    state = restored
    logging.info("Resumed from the checkpoint at step %d in %s.", int(state.step), workdir)
  first_epoch = int(state.step) // steps_per_epoch
  work.keep_metrics_up_to(first_epoch)

  train_images = jax.device_put(dataset.train_images)
  evaluator = evaluate_lib.Evaluator(model, weights, corrupt, dataset.test_images,
                                     config.eval_batch_size, eval_key, dataset.test_labels)
  previous = _previous_train_seconds(work)
  train_seconds = previous
  try:
    for epoch in range(first_epoch, config.num_epochs):
      t0 = time.perf_counter()
      order = start_epoch(state, shuffle_key)
      step0 = int(state.step)
      state, history = run_epoch(state, train_images, order, noise_key)
      history = jax.device_get(history)
      seconds = time.perf_counter() - t0
      check_finite(history, step0)
      test = evaluator.loss_terms(state.params)
      train_seconds += seconds
      record = {"epoch": epoch + 1, "step": int(state.step),
                "train": {k: float(np.mean(v)) for k, v in history.items()},
                "test": test, "seconds": seconds, "train_seconds": train_seconds,
                "examples_per_second": steps_per_epoch * config.batch_size / seconds}
      checkpoint.save(mngr, int(state.step), state)
      work.log_epoch(record)
      logging.info("epoch %d/%d  train loss %.5f  test loss %.5f  %s  %.1fs  %.0f ex/s",
                   epoch + 1, config.num_epochs, record["train"]["loss"], test["loss"],
                   "  ".join(f"{k} {v:.5f}" for k, v in test.items() if k != "loss"),
                   seconds, record["examples_per_second"])
  finally:
    work.close()
    mngr.close()

  results = {
      "name": config.name,
      "model": config.model.to_dict(),
      "dataset": dataset.record(),
      "epochs": int(state.step) // steps_per_epoch,
      "steps": int(state.step),
      "losses": weights,
      "corruption": config.corruption.to_dict(),
      "epoch_mode": mode,
      "microbatch_size": microbatch,
      "backend": jax.default_backend(),
      "train_seconds": train_seconds,
      **evaluator.results(state.params),
  }
  (work.path / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  plots.reconstruction_grid(evaluator.grid_rows(state.params), work.path / "reconstructions.png")
  logging.info("Wrote %s: test mse %.5f, psnr %.2f dB.", work.path / "results.json",
               results["test"]["mse"], results["test"]["psnr_db"])
  return results


def _previous_train_seconds(work: _Workdir) -> float:
  if not work.metrics_path.exists():
    return 0.0
  lines = [l for l in work.metrics_path.read_text().splitlines() if l.strip()]
  return float(json.loads(lines[-1])["train_seconds"]) if lines else 0.0
