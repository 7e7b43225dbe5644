"""Speed measurements of aejax's training, built from the core's own pieces.

Every JAX number here comes from the code a run uses: ``engine.setup`` (model,
objective, compiled step and epoch functions), ``inputs`` (the epoch, on the device
or streamed) and the run's evaluator; nothing is re-implemented for the benchmark. ``experiments.bench_torch`` holds the PyTorch
eager twins of the same four models for a side-by-side comparison.

A measurement trains for ``num_epochs`` epochs and reports the median seconds of
the epochs after the first (the first one compiles); ``compile_s`` is the first
epoch's seconds minus that median. Images are ``uint8 [N, 28, 28, 1]``.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from aejax import config as config_lib, data as data_lib, engine
from aejax import inputs, trainer as trainer_lib
from aejax import step as step_lib

EPOCH_MODES = config_lib.EPOCH_MODES


@dataclasses.dataclass
class Measurement:
  """One model trained for a few epochs by one framework; seconds are wall time."""
  framework: str  # 'aejax' or 'pytorch'
  model: str
  epoch_mode: str  # 'scan' / 'step' (aejax, resolved), 'eager' (pytorch)
  compute_dtype: str
  microbatch_size: int  # examples per gradient chunk (the batch size: no chunking)
  num_images: int
  batch_size: int
  epoch_seconds: list[float]
  compile_s: float | None  # first epoch minus the median of the others
  peak_device_bytes: int | None  # None where the backend does not report it
  peak_rss_bytes: int  # the process's peak resident memory so far
  final_loss: float  # mean train loss over the last epoch
  test_mse: float  # clean-input MSE on the test images after training
  device: str
  num_devices: int = 1  # data-parallel over this many devices
  input: str = "device"  # aejax: the train set on the device, or streamed (config.input)
  members: int = 1  # models trained in one program (config.sweep over seeds)

  @property
  def median_epoch_s(self) -> float:
    return float(np.median(self.epoch_seconds[1:]))

  @property
  def best_epoch_s(self) -> float:
    """The fastest epoch after the first: less sensitive than the median to other
    work on a shared machine (which hurts spinning thread pools most)."""
    return float(np.min(self.epoch_seconds[1:]))

  @property
  def examples_per_s(self) -> float:
    steps = self.num_images // self.batch_size
    return steps * self.batch_size / self.median_epoch_s

  @property
  def examples_per_s_per_device(self) -> float:
    return self.examples_per_s / self.num_devices

  def record(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "median_epoch_s": self.median_epoch_s,
            "best_epoch_s": self.best_epoch_s, "examples_per_s": self.examples_per_s,
            "examples_per_s_per_device": self.examples_per_s_per_device}


def benchmark_config(config: ml_collections.ConfigDict, *, batch_size: int,
                     num_epochs: int, compute_dtype: str = "float32",
                     microbatch_size: int = 0, learning_rate: float = 1e-3
                     ) -> ml_collections.ConfigDict:
  """An experiment's config with the benchmark's sizes and a constant learning rate.

  Constant rather than the configs' cosine schedule so that the PyTorch twin (plain
  ``torch.optim.Adam`` at the same rate) does the same arithmetic per step; 1e-3,
  Keras's default, because without the configs' warm-up their peak rates (3e-3 for
  the conv nets) killed every relu of the denoising conv net in the first steps
  (test MSE 0.114, a black image) in our runs.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.batch_size = batch_size
  config.num_epochs = num_epochs
  config.schedule = "constant"
  config.learning_rate = learning_rate
  config.model.compute_dtype = compute_dtype
  config.microbatch_size = microbatch_size
  config_lib.validate(config)
  return config


def benchmark_images(num_images: int, data_dir: str | None = None
                     ) -> tuple[np.ndarray, np.ndarray, str]:
  """``(train uint8 [num_images, 28, 28, 1], test uint8 [M, 28, 28, 1], source)``.

  Real MNIST from ``data_dir`` when given (its first ``num_images`` training images,
  repeated past 60,000), else the bundled 6,000-image sample repeated up to the size:
  the cost of an epoch depends on the shapes, not on which digits they hold.
  """
  if num_images <= 0:
    raise ValueError(f"num_images must be positive, got {num_images}.")
  dataset = data_lib.read_idx_folder(data_dir) if data_dir else data_lib.load_sample()
  source = (f"MNIST from --data_dir ({len(dataset.train_images)} training images)"
            if data_dir else "the bundled 6,000-image MNIST sample")
  n = len(dataset.train_images)
  if num_images > n:
    source += f", repeated to {num_images}"
  reps = math.ceil(num_images / n)
  images = np.concatenate([dataset.train_images] * reps)[:num_images] if reps > 1 \
      else dataset.train_images[:num_images]
  return np.ascontiguousarray(images), dataset.test_images, source


def peak_device_bytes() -> int | None:
  """The default device's peak allocation, where the backend reports one (not CPU)."""
  stats = jax.local_devices()[0].memory_stats()
  return None if not stats or "peak_bytes_in_use" not in stats else int(
      stats["peak_bytes_in_use"])


def peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def device_name() -> str:
  device = jax.local_devices()[0]
  return f"{device.platform}: {device.device_kind}"


class JaxTrainer:
  """A run's own setup (``engine.setup``) for one config, and its input."""

  def __init__(self, config, images: np.ndarray, epoch_mode: str, num_devices: int = 1,
               input_mode: str = "device"):
    config = ml_collections.ConfigDict(config.to_dict())
    config.epoch_mode, config.input = epoch_mode, input_mode
    dataset = data_lib.Dataset(
        name="benchmark", source="benchmark", location="", train_images=images,
        train_labels=np.zeros(len(images), np.uint8), test_images=images[:1],
        test_labels=np.zeros(1, np.uint8))
    self.run = engine.setup(config, dataset, engine.default_mesh(config, num_devices))
    self.state = self.run.state
    self.epochs = 0
    self._evaluator = None
    # The train set goes to the device (or its array_record copy is written) before
    # the clock starts.
    self.input = inputs.open_input(self.run, dataset)

  def epoch(self) -> dict[str, np.ndarray]:
    """Trains one epoch; returns its per-step metrics on the host."""
    self.state, history = self.input.train_epoch(self.state, self.epochs)
    self.epochs += 1
    return history

  def test_mse(self, test_images: np.ndarray) -> float:
    """The test MSE of the model (a sweep's: member 0), its evaluation compiled once."""
    members = self.run.plan.members
    if self._evaluator is None:
      run = self.run if members is None else self.run.member(0)
      self._evaluator = run.evaluator(test_images)
    variables = trainer_lib.member_variables(self.run, self.state, 0)
    return self._evaluator.results(variables)["test"]["mse"]


def time_jax(name: str, config, images: np.ndarray, test_images: np.ndarray, *,
             epoch_mode: str, num_devices: int = 1, input_mode: str = "device") -> Measurement:
  """Trains ``config``'s model (called ``name``) for ``config.num_epochs`` epochs,
  data-parallel over the first ``num_devices`` devices, its batches from the train set
  on the device or streamed (``input_mode``, ``config.input``).

  ``config`` comes from ``benchmark_config``; each epoch is timed.
  """
  trainer = JaxTrainer(config, images, epoch_mode, num_devices=num_devices,
                       input_mode=input_mode)
  seconds = []
  for _ in range(config.num_epochs):
    t0 = time.perf_counter()
    history = trainer.epoch()  # device_get waits for the epoch to finish
    seconds.append(time.perf_counter() - t0)
  step_lib.check_finite(history, trainer_lib.steps_taken(trainer.state) - len(history["loss"]))
  median = float(np.median(seconds[1:]))
  plan = trainer.run.plan
  return Measurement(
      framework="aejax", model=name, epoch_mode=plan.epoch_mode,
      compute_dtype=config.model.compute_dtype,
      microbatch_size=plan.microbatch_size, num_images=len(images),
      batch_size=config.batch_size, epoch_seconds=seconds,
      compile_s=max(seconds[0] - median, 0.0), peak_device_bytes=peak_device_bytes(),
      peak_rss_bytes=peak_rss_bytes(), final_loss=float(np.mean(history["loss"])),
      test_mse=trainer.test_mse(test_images), device=device_name(), num_devices=num_devices,
      input=plan.input, members=plan.members.size if plan.members else 1)


def time_to_quality(config, images: np.ndarray, test_images: np.ndarray, *,
                    target_mse: float, epoch_mode: str = "auto") -> dict[str, Any]:
  """Wall seconds for ``config``'s model to reach test MSE ``target_mse``.

  The clock starts before the model is built and stops when the test MSE, measured
  after each epoch, is at or below the target: model init, the compilation of the
  epoch and of the evaluation, training and every evaluation are inside. The
  config's own schedule, batch size and epochs are kept (it stops at its last epoch
  when the target is never reached).
  """
  t0 = time.perf_counter()
  trainer = JaxTrainer(config, images, epoch_mode)
  curve = []
  for epoch in range(1, config.num_epochs + 1):
    trainer.epoch()
    mse = trainer.test_mse(test_images)
    curve.append({"epoch": epoch, "seconds": time.perf_counter() - t0, "test_mse": mse})
    if mse <= target_mse:
      break
  return {"target_mse": target_mse, "reached": curve[-1]["test_mse"] <= target_mse,
          "seconds": curve[-1]["seconds"], "epochs": len(curve), "curve": curve,
          "epoch_mode": trainer.run.plan.epoch_mode,
          "microbatch_size": trainer.run.plan.microbatch_size,
          "batch_size": config.batch_size,
          "num_images": len(images), "device": device_name()}


def enable_compilation_cache(cache_dir: str) -> None:
  """JAX's persistent compilation cache in ``cache_dir``, for every compiled function.

  The default thresholds skip programs that compile in under a second, which on a
  CPU is most of ours; they are lowered to cache everything.
  """
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# --------------------------------------------------------------------- printing


def _mib(n: int | None) -> str:
  return "n/a" if n is None else f"{n / 2**20:.0f} MiB"


def table(measurements: list[Measurement]) -> str:
  """A Markdown table, one row per measurement."""
  head = ("| framework | model | devices | epoch | dtype | chunk | images | s/epoch | best s "
          "| examples/s | per device | compile s "
          "| peak device mem | peak RSS | final loss | test MSE | input | members |")
  rows = [head, "|" + "---|" * (head.count("|") - 1)]
  for m in measurements:
    compile_s = "–" if m.compile_s is None else f"{m.compile_s:.2f}"
    rows.append(
        f"| {m.framework} | {m.model} | {m.num_devices} | {m.epoch_mode} | {m.compute_dtype} "
        f"| {m.microbatch_size} | {m.num_images} "
        f"| {m.median_epoch_s:.4g} | {m.best_epoch_s:.4g} | {m.examples_per_s:,.0f} "
        f"| {m.examples_per_s_per_device:,.0f} "
        f"| {compile_s} "
        f"| {_mib(m.peak_device_bytes)} | {_mib(m.peak_rss_bytes)} | {m.final_loss:.5f} "
        f"| {m.test_mse:.5f} | {m.input} | {m.members} |")
  return "\n".join(rows)


def member_ratios(measurements: list[Measurement]) -> list[str]:
  """For each sweep measured beside its one-member run: M members' epoch in one
  program against M times one member's (the target: at most 1.1 on a CPU). Measured
  several times in turn (``--repeats``), the k-th sweep pairs with the k-th one-member
  run and the ratio is the median over those pairs, beside their range: the machine's
  drift then moves both sides of each pair alike. The ratio of the fastest epochs
  beside it is the one that other work on the machine can only raise."""
  runs = {}
  for m in measurements:
    if m.framework == "aejax":
      runs.setdefault((m.model, m.num_devices, m.epoch_mode, m.compute_dtype,
                       m.microbatch_size, m.input, m.num_images, m.members), []).append(m)
  lines = []
  for (*setting, members), sweeps in runs.items():
    ones = runs.get((*setting, 1))
    if members == 1 or not ones:
      continue
    pairs = list(zip(sweeps, ones))
    ratios = [m.median_epoch_s / (members * one.median_epoch_s) for m, one in pairs]
    sweep_s = float(np.median([m.median_epoch_s for m, _ in pairs]))
    one_s = float(np.median([one.median_epoch_s for _, one in pairs]))
    spread = (f" (median of {len(pairs)} pairs measured in turn: "
              f"{min(ratios):.2f}-{max(ratios):.2f})" if len(pairs) > 1 else "")
    fastest = (min(m.best_epoch_s for m in sweeps) /
               (members * min(one.best_epoch_s for one in ones)))
    lines.append(f"{setting[0]}: {members} members in one program {sweep_s:.4g} s/epoch vs "
                 f"{members} x one member's {one_s:.4g} s = {members * one_s:.4g} s: "
                 f"ratio {float(np.median(ratios)):.2f}{spread}; fastest epochs: "
                 f"ratio {fastest:.2f}")
  return lines


def ratios(measurements: list[Measurement]) -> list[str]:
  """For each model timed by both frameworks: how many times faster aejax's epoch is."""
  lines = []
  for torch_m in (m for m in measurements if m.framework == "pytorch"):
    for m in measurements:
      if m.framework == "aejax" and m.model == torch_m.model and m.num_devices == 1 and \
          m.input == "device" and \
          m.num_images == torch_m.num_images and m.batch_size == torch_m.batch_size:
        lines.append(
            f"{m.model} ({m.epoch_mode}, {m.compute_dtype}, chunk {m.microbatch_size}): "
            f"aejax {m.median_epoch_s:.4g} s "
            f"vs PyTorch eager {torch_m.median_epoch_s:.4g} s per epoch (median): "
            f"{torch_m.median_epoch_s / m.median_epoch_s:.2f}x; fastest epochs "
            f"{m.best_epoch_s:.4g} vs {torch_m.best_epoch_s:.4g} s: "
            f"{torch_m.best_epoch_s / m.best_epoch_s:.2f}x")
  return lines
