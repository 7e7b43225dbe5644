"""Seconds per epoch of aejax's training, optionally beside PyTorch eager: the entry point.

    python -m experiments.benchmark                      # 4 models, 60,000 images, batch 256
    python -m experiments.benchmark --data_dir=<MNIST folder> --compare=torch \
        --models=vanilla,conv --json=bench.json
    python -m experiments.benchmark --models= --time_to_quality --data_dir=<MNIST folder>
    python -m experiments.benchmark --models= --scaling

For each model and epoch mode: the median seconds of the epochs after the first,
examples per second, compile time (first epoch minus that median), peak device
memory where the backend reports it (not on CPU: 'n/a'), the process's peak RSS,
the last epoch's mean train loss and the test MSE. ``--compare=torch`` times the
PyTorch eager twins (``experiments/bench_torch.py``) in the same run and prints the ratio.
``--devices=1,2,4,8`` trains data-parallel on the first N devices (forced CPU devices
on a CPU host: there the figure is the overhead of partitioning, not a speed-up).
``--input=device,stream`` times each with the train set on the device and streamed
from array_record files (``config.input``; the copy is written before the clock).
``--members=1,8,32`` trains N-seed sweeps (``config.sweep``) as one program and
prints each against N times one member's epoch (``--repeats=5``: each measured five
times in turn, the ratio the median over the pairs); ``--sweep_launch=8`` times one
8-seed sweep launch of the CLI against 8 separate launches, start-up and
compilation included, for each model of ``--sweep_launch_models``. ``--time_to_quality`` times the vanilla model at its default config to a test MSE,
compilation included, in two fresh processes: cold, then with JAX's persistent
compilation cache warm. ``--scaling`` times the vanilla model against data size and
code size, and the conv model against its width. Heavy: on a shared machine run it
under ``flock`` (see docs/performance.md).
"""

import itertools
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import jax
from absl import app, flags

from aejax import data
from experiments import bench
from experiments.configs import conv, denoising, multilayer, vanilla

# The four models of the speed table (docs/performance.md), by benchmark name.
MODEL_CONFIGS = {"vanilla": vanilla, "multilayer": multilayer, "conv": conv,
                 "denoising": denoising}

_MODELS = flags.DEFINE_list("models", list(MODEL_CONFIGS), "Models to time (may be empty).")
_EPOCH_MODES = flags.DEFINE_list("epoch_modes", ["auto"], "Epoch modes: auto, scan, step.")
_DTYPES = flags.DEFINE_list("compute_dtypes", ["float32"], "float32, bfloat16 (params stay fp32).")
_MICROBATCH = flags.DEFINE_list("microbatch_sizes", ["0"], "Gradient chunk sizes "
                                "(config.microbatch_size; 0 = auto, the batch size = none).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Images per step (over all devices).")
_INPUTS = flags.DEFINE_list("input", ["device"], "Where batches come from (config.input): "
                            "device (the train set on every device), stream (grain over "
                            "array_record files, written once to the TFDS data dir).")
_DEVICES = flags.DEFINE_list("devices", ["1"], "Device counts to train on, data-parallel "
                             "(on a CPU, that many forced CPU devices).")
_MEMBERS = flags.DEFINE_list("members", ["1"], "Models per program: N > 1 trains an "
                             "N-seed sweep (config.sweep) in one compiled program.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Measure every setting this many times, "
                                "in turn (the member ratios: the median over repeats).")
_SWEEP_LAUNCH = flags.DEFINE_integer("sweep_launch", 0, "N > 0: wall time of one N-seed "
                                     "sweep launch of vanilla against N separate launches.")
_SWEEP_LAUNCH_MODELS = flags.DEFINE_list("sweep_launch_models", ["vanilla"],
                                         "Models whose --sweep_launch is timed.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam's constant rate, both "
                                    "frameworks (the configs' schedules are not used).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 60000, "Training images per epoch.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "MNIST IDX folder; empty: the bundled "
                                "sample, repeated up to --num_images.")
_NUM_EPOCHS = flags.DEFINE_integer("num_epochs", 4, "Epochs per measurement (>= 2; the "
                                   "first compiles and is left out of the median).")
_COMPARE = flags.DEFINE_enum("compare", "", ["", "torch"], "Also time the PyTorch eager twins.")
_JSON = flags.DEFINE_string("json", "", "Write every measurement to this JSON file.")
_TTQ = flags.DEFINE_bool("time_to_quality", False, "Time the vanilla model to --target_mse.")
_TARGET_MSE = flags.DEFINE_float("target_mse", 0.0055, "Test MSE for --time_to_quality.")
_SCALING = flags.DEFINE_bool("scaling", False, "Time epochs against data and model size.")
_SCALING_SIZES = flags.DEFINE_list("scaling_sizes", ["6000", "60000", "600000"],
                                   "Data sizes for --scaling (vanilla).")
_SCALING_CODE_SIZES = flags.DEFINE_list("scaling_code_sizes", ["32", "64", "128", "256", "512"],
                                        "Vanilla code sizes for --scaling, at --num_images.")
_SCALING_CONV_WIDTHS = flags.DEFINE_list("scaling_conv_widths", ["16", "32", "64"],
                                         "Conv channels for --scaling, at 6,000 images.")
_SCALING_EPOCHS = flags.DEFINE_integer("scaling_epochs", 3, "Epochs per --scaling point.")
# Internal: one time-to-quality run in this (fresh) process, cache in --cache_dir.
_TTQ_CHILD = flags.DEFINE_bool("ttq_child", False, "Internal: see --time_to_quality.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", "", "Internal: the compilation cache folder.")


def validate() -> None:
  """Raises ValueError for flag values the benchmark cannot use, before any compute."""
  unknown = [m for m in _MODELS.value if m not in MODEL_CONFIGS]
  if unknown:
    raise ValueError(f"--models: unknown {unknown}; choose from {list(MODEL_CONFIGS)}.")
  bad_modes = [m for m in _EPOCH_MODES.value if m not in bench.EPOCH_MODES]
  if bad_modes or not _EPOCH_MODES.value:
    raise ValueError(f"--epoch_modes: use some of {list(bench.EPOCH_MODES)}, "
                     f"got {_EPOCH_MODES.value}.")
  bad_dtypes = [d for d in _DTYPES.value if d not in ("float32", "bfloat16", "float16")]
  if bad_dtypes or not _DTYPES.value:
    raise ValueError(f"--compute_dtypes: use float32, bfloat16 or float16, got {_DTYPES.value}.")
  chunks = [int(c) for c in _MICROBATCH.value if c.strip().isdigit()]
  if len(chunks) != len(_MICROBATCH.value) or not chunks or any(
      c and _BATCH_SIZE.value % c for c in chunks):
    raise ValueError(f"--microbatch_sizes: use 0 (auto) or divisors of --batch_size="
                     f"{_BATCH_SIZE.value}, got {_MICROBATCH.value}.")
  if not _LEARNING_RATE.value > 0:
    raise ValueError(f"--learning_rate must be > 0, got {_LEARNING_RATE.value}.")
  if _NUM_EPOCHS.value < 2:
    raise ValueError(f"--num_epochs must be >= 2 (the first one compiles), got "
                     f"{_NUM_EPOCHS.value}.")
  if not 0 < _BATCH_SIZE.value <= _NUM_IMAGES.value:
    raise ValueError(f"--batch_size must be in [1, --num_images={_NUM_IMAGES.value}], "
                     f"got {_BATCH_SIZE.value}.")
  if not _INPUTS.value or any(i not in ("device", "stream") for i in _INPUTS.value):
    raise ValueError(f"--input: use device and/or stream, got {_INPUTS.value}.")
  counts = [int(d) for d in _DEVICES.value if d.strip().isdigit()]
  if len(counts) != len(_DEVICES.value) or not counts or any(
      c < 1 or _BATCH_SIZE.value % c for c in counts):
    raise ValueError(f"--devices: use positive divisors of --batch_size={_BATCH_SIZE.value}, "
                     f"got {_DEVICES.value}.")
  if max(counts) > jax.device_count():
    raise ValueError(f"--devices={_DEVICES.value}: this host has {jax.device_count()} "
                     f"{jax.default_backend()} devices.")
  members = [int(m) for m in _MEMBERS.value if m.strip().isdigit()]
  if len(members) != len(_MEMBERS.value) or not members or min(members) < 1:
    raise ValueError(f"--members: use positive integers, got {_MEMBERS.value}.")
  if _REPEATS.value < 1:
    raise ValueError(f"--repeats must be >= 1, got {_REPEATS.value}.")
  if _SWEEP_LAUNCH.value < 0:
    raise ValueError(f"--sweep_launch must be >= 0, got {_SWEEP_LAUNCH.value}.")
  if unknown := set(_SWEEP_LAUNCH_MODELS.value) - set(MODEL_CONFIGS):
    raise ValueError(f"--sweep_launch_models: unknown {sorted(unknown)}; choose from "
                     f"{list(MODEL_CONFIGS)}.")
  if _DATA_DIR.value and not pathlib.Path(_DATA_DIR.value).is_dir():
    raise ValueError(f"--data_dir={_DATA_DIR.value} is not a folder.")
  if _COMPARE.value == "torch":
    try:
      import torch  # noqa: F401
    except ImportError:
      raise ValueError("--compare=torch needs PyTorch: pip install -e '.[bench]'.") from None


def measure_models() -> list[bench.Measurement]:
  images, test_images, source = bench.benchmark_images(_NUM_IMAGES.value, _DATA_DIR.value)
  print(f"data: {len(images)} images from {source}; batch {_BATCH_SIZE.value}; "
        f"{_NUM_EPOCHS.value} epochs each; jax {jax.__version__}, {bench.device_name()}",
        flush=True)
  measurements = []
  for name in _MODELS.value:
    for dtype in _DTYPES.value:
      for chunk in map(int, _MICROBATCH.value):
        config = bench.benchmark_config(MODEL_CONFIGS[name].get_config(),
                                        batch_size=_BATCH_SIZE.value,
                                        num_epochs=_NUM_EPOCHS.value, compute_dtype=dtype,
                                        microbatch_size=chunk,
                                        learning_rate=_LEARNING_RATE.value)
        for mode in _EPOCH_MODES.value:
          for devices in map(int, _DEVICES.value):
            for input_mode in _INPUTS.value:
              for _, members in itertools.product(range(_REPEATS.value),
                                                  map(int, _MEMBERS.value)):
                config.sweep = f"seed=0:{members}" if members > 1 else ""
                m = bench.time_jax(name, config, images, test_images, epoch_mode=mode,
                                   num_devices=devices, input_mode=input_mode)
                measurements.append(m)
                print(f"  aejax {name} {m.epoch_mode} {dtype} chunk {m.microbatch_size} on "
                      f"{devices} device(s), input {m.input}, {m.members} member(s): "
                      f"{m.median_epoch_s:.4g} s/epoch "
                      f"(epochs {['%.3g' % s for s in m.epoch_seconds]})", flush=True)
        config.sweep = ""
    if _COMPARE.value == "torch":
      from experiments import bench_torch  # only here: PyTorch is an optional extra
      config = bench.benchmark_config(MODEL_CONFIGS[name].get_config(),
                                      batch_size=_BATCH_SIZE.value,
                                      num_epochs=_NUM_EPOCHS.value,
                                      learning_rate=_LEARNING_RATE.value)
      m = bench_torch.time_torch(name, config, images, test_images)
      measurements.append(m)
      print(f"  pytorch {name} eager: {m.median_epoch_s:.4g} s/epoch "
            f"(epochs {['%.3g' % s for s in m.epoch_seconds]}; {m.device})", flush=True)
  return measurements


def time_to_quality_child() -> dict:
  """One time-to-quality run; the persistent cache lives in --cache_dir."""
  bench.enable_compilation_cache(_CACHE_DIR.value)
  cache = pathlib.Path(_CACHE_DIR.value)
  entries = sum(1 for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else 0
  dataset = data.read_idx_folder(_DATA_DIR.value) if _DATA_DIR.value else data.load_sample()
  result = bench.time_to_quality(vanilla.get_config(), dataset.train_images,
                                 dataset.test_images, target_mse=_TARGET_MSE.value)
  return {**result, "data": dataset.record(), "cache_entries_at_start": entries}


def time_to_quality() -> dict:
  """Cold then warm: two fresh processes sharing one new compilation cache folder."""
  runs = {}
  with tempfile.TemporaryDirectory(prefix="aejax-jax-cache-") as cache_dir:
    for label in ("cold", "warm_cache"):
      out = pathlib.Path(cache_dir) / f"{label}.json"
      cmd = [sys.executable, "-m", "experiments.benchmark", "--ttq_child", "--models=",
             f"--cache_dir={cache_dir}/jax", f"--data_dir={_DATA_DIR.value}",
             f"--target_mse={_TARGET_MSE.value}", f"--json={out}"]
      subprocess.run(cmd, check=True)
      runs[label] = json.loads(out.read_text())
      r = runs[label]
      print(f"  time to test MSE {r['target_mse']} ({label}): {r['seconds']:.2f} s, "
            f"{'reached' if r['reached'] else 'NOT reached'} after {r['epochs']} epochs "
            f"(test MSE {r['curve'][-1]['test_mse']:.5f}; {r['data']['n_train']} images, "
            f"batch {r['batch_size']}, {r['epoch_mode']} mode)", flush=True)
  return runs


def sweep_launch(members: int, model: str) -> dict:
  """Wall seconds of one ``--config.sweep=seed=0:N`` launch of ``model``'s config
  against N launches of one seed each, start-up and compilation included: on
  --data_dir (or the bundled sample), --num_epochs epochs, batch --batch_size."""
  data_flags = ([f"--config.data_dir={_DATA_DIR.value}"] if _DATA_DIR.value
                else ["--config.dataset=mnist_sample"])
  common = [f"--config=experiments/configs/{model}.py", *data_flags,
            f"--config.num_epochs={_NUM_EPOCHS.value}",
            f"--config.batch_size={_BATCH_SIZE.value}"]
  env = {**os.environ, "AEJAX_DATA_DIR": ""}

  def launch(workdir, *args) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "experiments.main", f"--workdir={workdir}",
                    *common, *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - start

  with tempfile.TemporaryDirectory(prefix="aejax-sweep-launch-") as root:
    one = launch(f"{root}/sweep", f"--config.sweep=seed=0:{members}")
    separate = sum(launch(f"{root}/seed{i}", f"--config.seed={i}") for i in range(members))
  result = {"model": model, "members": members, "sweep_s": one, "separate_s": separate,
            "speedup": separate / one, "num_epochs": _NUM_EPOCHS.value}
  print(f"  {model}: {members}-seed sweep launch {one:.1f} s vs {members} separate launches "
        f"{separate:.1f} s: {separate / one:.2f}x faster", flush=True)
  return result


def scaling() -> list[dict]:
  """Seconds per epoch against data size (vanilla) and model size (vanilla, conv)."""
  points = []

  def point(axis, value, name, config, n):
    images, test_images, _ = bench.benchmark_images(n, _DATA_DIR.value)
    config = bench.benchmark_config(config, batch_size=_BATCH_SIZE.value,
                                    num_epochs=_SCALING_EPOCHS.value,
                                    learning_rate=_LEARNING_RATE.value)
    m = bench.time_jax(name, config, images, test_images, epoch_mode="auto")
    record = {"axis": axis, "value": value, "model": name, "num_images": n,
              "epoch_mode": m.epoch_mode, "median_epoch_s": m.median_epoch_s,
              "us_per_example": 1e6 * m.median_epoch_s / n}
    points.append(record)
    print(f"  {axis}={value}: {m.median_epoch_s:.4g} s/epoch, "
          f"{record['us_per_example']:.3g} us/example", flush=True)

  for n in map(int, _SCALING_SIZES.value):
    point("images", n, "vanilla", vanilla.get_config(), n)
  for code_size in map(int, _SCALING_CODE_SIZES.value):
    config = vanilla.get_config()
    config.model.code_size = code_size
    point("vanilla code size", code_size, "vanilla", config, _NUM_IMAGES.value)
  for width in map(int, _SCALING_CONV_WIDTHS.value):
    config = conv.get_config()
    config.model.features = (width, width)
    point("conv width", width, "conv", config, 6000)
  return points


def scaling_table(points: list[dict]) -> str:
  rows = ["| axis | value | model | images | epoch | s/epoch | µs/example | per-example cost vs first |",
          "|---|---|---|---|---|---|---|---|"]
  first = {}
  for p in points:
    base = first.setdefault(p["axis"], p["us_per_example"])
    rows.append(f"| {p['axis']} | {p['value']} | {p['model']} | {p['num_images']} "
                f"| {p['epoch_mode']} | {p['median_epoch_s']:.4g} | {p['us_per_example']:.3g} "
                f"| {p['us_per_example'] / base:.2f} |")
  return "\n".join(rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Before the backend starts: on a CPU host, as many CPU devices as --devices asks.
  counts = [int(d) for d in _DEVICES.value if d.strip().isdigit()]
  if counts and max(counts) > 1 and "JAX_NUM_CPU_DEVICES" not in os.environ:
    jax.config.update("jax_num_cpu_devices", max(counts))
  try:
    validate()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if _TTQ_CHILD.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(time_to_quality_child(), indent=2))
    return
  # The load average says whether other work shared the CPU during the timings.
  report = {"jax": jax.__version__, "device": bench.device_name(),
            "machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
            "command": " ".join(["python -m experiments.benchmark", *sys.argv[1:]]),
            "load_average_at_start": os.getloadavg()[0]}
  measurements = measure_models() if _MODELS.value else []
  if measurements:
    print("\n" + bench.table(measurements))
    for line in bench.ratios(measurements) + bench.member_ratios(measurements):
      print(line)
    report["measurements"] = [m.record() for m in measurements]
  if _TTQ.value:
    report["time_to_quality"] = time_to_quality()
  if _SWEEP_LAUNCH.value:
    report["sweep_launch"] = [sweep_launch(_SWEEP_LAUNCH.value, model)
                              for model in _SWEEP_LAUNCH_MODELS.value]
  if _SCALING.value:
    points = scaling()
    print("\n" + scaling_table(points))
    report["scaling"] = points
  report["load_average_at_end"] = os.getloadavg()[0]
  print(f"\n{report['machine']}, jax {jax.__version__}; 1-minute load average "
        f"{report['load_average_at_start']:.1f} at start, {report['load_average_at_end']:.1f} "
        "at end")
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
