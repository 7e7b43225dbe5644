"""An image folder at its real size: aejax's loading beside a plain Pillow loop and
torchvision, first and second load, and the peak memory of a streamed run
(docs/data.md#loading-at-size).

    python -m experiments.data_bench --json=data_bench.json
    python -m experiments.data_bench --num_images=2000 --repeats=1 --notorchvision --norss

Makes once, under ``--folders``, a folder of ``--num_images`` 128x128 JPEG crops
(quality 90) of scikit-image's colour photographs (random squares, scales and flips
from a fixed seed; a class subfolder per photograph), and one of 4x as many made the
same way; later runs reuse them. Then, ``--repeats`` times in turn, each in a fresh
process (a real launch: only the load is timed; the process's peak RSS is recorded):

  a. a plain serial Pillow loop doing per image what aejax's folder reader does (open,
     convert to RGB, ``image_files.resize_and_crop`` to ``--image_size``, ``np.asarray``),
     then stacked: today's floor;
  b. aejax's first load, ``aejax.data.load(config)`` of ``folder:<path>`` at
     ``image_size``, 3 channels, with ``TFDS_DATA_DIR`` a new empty folder (each repeat
     its own), so that nothing prepared before exists;
  c. aejax's second load, the same again with the same ``TFDS_DATA_DIR``;
  d. torchvision's ``ImageFolder`` (Resize and CenterCrop to ``image_size``, bicubic as
     aejax's reader, PILToTensor) through a ``DataLoader`` of batch 256 at 2 workers,
     one whole pass, where torchvision is installed (``pip install -e '.[bench]'``).

Every figure is the median over the repeats (the first/second ratio: over each
repeat's pair). Then, once each (peak memory varies little): e. the peak RSS of a
1-epoch ``input=stream`` training run through the command line on each folder, in a
fresh ``TFDS_DATA_DIR`` (so the run prepares what it streams), and their ratio. The
table gives the three targets with pass or fail, and the time to prepare ImageNet-1k
projected from the first load's rate. The files are in the page cache throughout
(each folder is read once before its first measurement): reading from a cold disk is
not measured.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import util as importlib_util

import numpy as np
from absl import app, flags

from experiments.loading import (folder_record, make_folder, files_of, projection, table,
                                 targets)

ROOT = pathlib.Path(__file__).resolve().parents[1]

_NUM_IMAGES = flags.DEFINE_integer("num_images", 20000, "JPEG crops in the folder (the "
                                   "RSS measurement also uses a folder of 4x as many).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Every loader resizes and "
                                   "centre-crops to this square (config.image_size).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Times each load is measured, in turn "
                                "(aejax's first load in a new TFDS data dir each time).")
_FOLDERS = flags.DEFINE_string("folders", "~/.cache/aejax/data_bench", "Where the "
                               "folders of crops are made once and then reused.")
_TORCHVISION = flags.DEFINE_bool("torchvision", True, "Measure torchvision's ImageFolder "
                                 "where torchvision is installed.")
_RSS = flags.DEFINE_bool("rss", True, "Measure the peak RSS of a 1-epoch streamed run on "
                         "the folder and on the 4x folder.")
_JSON = flags.DEFINE_string("json", "", "Write every figure to this JSON file.")
# Internal: one measured load in this (fresh) process, its figures to --child_out.
_CHILD = flags.DEFINE_enum("child", "", ["", "pillow", "aejax", "torchvision"],
                           "Internal: see the module's docstring.")
_CHILD_FOLDER = flags.DEFINE_string("child_folder", "", "Internal: the folder loaded.")
_CHILD_OUT = flags.DEFINE_string("child_out", "", "Internal: the child's JSON.")



# ------------------------------------------------ the measured loads (children)

def _peak_rss_bytes() -> int:
  import resource
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak if sys.platform == "darwin" else peak * 1024  # Linux: KiB


def load_pillow(folder: pathlib.Path, size: int) -> dict:
  """a. The serial loop: aejax's reader's work per image, one image after another."""
  from PIL import Image

  from aejax.data.image_files import resize_and_crop
  start = time.perf_counter()
  images = []
  for path in files_of(folder):
    with Image.open(path) as image:
      images.append(np.asarray(resize_and_crop(image.convert("RGB"), size), np.uint8))
  stacked = np.stack(images)
  return {"seconds": time.perf_counter() - start, "images": len(stacked),
          "shape": list(stacked.shape[1:])}


def load_aejax(folder: pathlib.Path, size: int) -> dict:
  """b. and c. ``aejax.data.load``, as a run calls it; whatever the TFDS data dir
  holds (nothing, or what a first load left there) is the environment's."""
  import aejax
  from aejax import data
  config = aejax.get_config("vanilla", dataset=f"folder:{folder}", image_size=size,
                            channels=3)
  start = time.perf_counter()
  dataset = data.load(config)
  seconds = time.perf_counter() - start
  peak = _peak_rss_bytes()  # before the fingerprint below reads every pixel
  record = dataset.record()
  return {"seconds": seconds, "images": record["n_train"] + record["n_test"],
          "shape": record["image_shape"], "fingerprint": record["fingerprint"],
          "peak_rss_at_load_bytes": peak}


def load_torchvision(folder: pathlib.Path, size: int) -> dict:
  """d. torchvision's ``ImageFolder`` through a ``DataLoader`` at 2 workers: one
  pass, the folder's scan and the workers' start included."""
  import torch
  from torchvision import datasets, transforms
  start = time.perf_counter()
  transform = transforms.Compose([
      transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
      transforms.CenterCrop(size), transforms.PILToTensor()])
  dataset = datasets.ImageFolder(str(folder), transform=transform)
  loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=2)
  images = 0
  for batch, _ in loader:
    images += len(batch)
  return {"seconds": time.perf_counter() - start, "images": images,
          "shape": list(batch.shape[1:]), "torch": torch.__version__}


CHILDREN = {"pillow": load_pillow, "aejax": load_aejax, "torchvision": load_torchvision}


# ----------------------------------------------------------------- the parent

def launch(args: list[str], log: pathlib.Path, env: dict | None = None) -> dict:
  """``python <args>`` in a fresh process, from the repository's root, waited for:
  its wall seconds and peak RSS (``ru_maxrss`` of it, or of the largest of the
  processes it waited for). A failure raises RuntimeError with the end of its log."""
  with open(log, "w") as out:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    raise RuntimeError(f"python {' '.join(args)} exited with {proc.returncode}:\n"
                       f"{log.read_text()[-3000:]}")
  peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
  return {"wall_seconds": seconds, "peak_rss_bytes": peak}


def measure_load(kind: str, folder: pathlib.Path, scratch: pathlib.Path,
                 env: dict | None = None) -> dict:
  """One load of ``folder`` by ``kind`` (``CHILDREN``) in a fresh process."""
  out = scratch / f"{kind}.json"
  process = launch(["-m", "experiments.data_bench", f"--child={kind}",
                    f"--child_folder={folder}", f"--image_size={_IMAGE_SIZE.value}",
                    f"--child_out={out}"], scratch / f"{kind}.log", env)
  figures = json.loads(out.read_text())
  return {**figures, **process, "images_per_s": figures["images"] / figures["seconds"]}


def measure_loads(folder: pathlib.Path, scratch: pathlib.Path) -> dict[str, list[dict]]:
  """a. to d., ``--repeats`` times in turn; aejax's two loads share a new TFDS data
  dir each repeat."""
  torchvision = _TORCHVISION.value and importlib_util.find_spec("torchvision") is not None
  runs = {"pillow": [], "aejax_first": [], "aejax_second": [], "torchvision": []}
  for repeat in range(_REPEATS.value):
    print(f"repeat {repeat + 1} of {_REPEATS.value}", flush=True)
    runs["pillow"].append(measure_load("pillow", folder, scratch))
    tfds_dir = scratch / f"tfds_{repeat}"
    tfds_dir.mkdir()
    env = {"TFDS_DATA_DIR": str(tfds_dir), "AEJAX_DATA_DIR": ""}
    runs["aejax_first"].append(measure_load("aejax", folder, scratch, env))
    runs["aejax_second"].append(measure_load("aejax", folder, scratch, env))
    shutil.rmtree(tfds_dir)  # what the first load prepared: a new one each repeat
    if torchvision:
      runs["torchvision"].append(measure_load("torchvision", folder, scratch))
    for name, rows in runs.items():
      if rows and len(rows) == repeat + 1:
        print(f"  {name}: {rows[-1]['seconds']:.3g} s, {rows[-1]['images_per_s']:,.0f} "
              f"images/s, peak RSS {rows[-1]['peak_rss_bytes'] / 2**20:,.0f} MiB", flush=True)
  return runs


def summary(rows: list[dict]) -> dict:
  """The median of each figure over the repeats, and every repeat's seconds."""
  return {"images": rows[0]["images"], "shape": rows[0]["shape"],
          "seconds": statistics.median(r["seconds"] for r in rows),
          "images_per_s": statistics.median(r["images_per_s"] for r in rows),
          "peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in rows),
          "seconds_each": [r["seconds"] for r in rows]}


def measure_rss(folder: pathlib.Path, scratch: pathlib.Path, name: str,
                test_fraction: float = 0.1) -> dict:
  """e. A 1-epoch ``input=stream`` run of the vanilla config through the command
  line on ``folder``, holding out ``test_fraction`` of it, in a new TFDS data dir and
  workdir; batch 256 (fewer on a tiny folder) keeps it short."""
  tfds_dir, workdir = scratch / f"tfds_{name}", scratch / f"run_{name}"
  tfds_dir.mkdir()
  process = launch(["-m", "experiments.main",
                    f"--config={ROOT / 'experiments/configs/vanilla.py'}",
                    f"--workdir={workdir}", f"--config.dataset=folder:{folder}",
                    f"--config.image_size={_IMAGE_SIZE.value}", "--config.channels=3",
                    "--config.input=stream", "--config.num_epochs=1",
                    f"--config.test_fraction={test_fraction}",
                    f"--config.batch_size={min(256, _NUM_IMAGES.value // 2)}"],
                   scratch / f"run_{name}.log", {"TFDS_DATA_DIR": str(tfds_dir),
                                                 "AEJAX_DATA_DIR": ""})
  results = json.loads((workdir / "results.json").read_text())
  shutil.rmtree(tfds_dir)
  shutil.rmtree(workdir)
  print(f"  1-epoch stream run on {folder.name}: peak RSS "
        f"{process['peak_rss_bytes'] / 2**20:,.0f} MiB, {process['wall_seconds']:.1f} s",
        flush=True)
  return {**process, "folder": str(folder), "n_train": results["dataset"]["n_train"],
          "n_test": results["dataset"]["n_test"], "test_fraction": test_fraction}


def validate() -> None:
  """Raises ValueError for flag values the benchmark cannot use, before any work."""
  if _NUM_IMAGES.value < 20:
    raise ValueError(f"--num_images must be >= 20 (both splits need images), got "
                     f"{_NUM_IMAGES.value}.")
  if _REPEATS.value < 1 or _IMAGE_SIZE.value < 1:
    raise ValueError(f"--repeats and --image_size must be >= 1, got {_REPEATS.value} and "
                     f"{_IMAGE_SIZE.value}.")
  if importlib_util.find_spec("skimage") is None:
    raise ValueError("making the folders of crops needs scikit-image's photographs: "
                     "pip install -e '.[bench]'.")


def _pillow_version() -> str:
  import PIL
  return PIL.__version__


def run_benchmark() -> dict:
  root = pathlib.Path(_FOLDERS.value).expanduser()
  folder = make_folder(root, _NUM_IMAGES.value)
  report = {"command": " ".join(["python -m experiments.data_bench", *sys.argv[1:]]),
            "machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
            "python": platform.python_version(), "pillow": _pillow_version(),
            "load_average_at_start": os.getloadavg()[0],
            "image_size": _IMAGE_SIZE.value, "repeats": _REPEATS.value,
            "folder": folder_record(folder)}
  with tempfile.TemporaryDirectory(prefix="aejax-data-bench-") as scratch:
    scratch = pathlib.Path(scratch)
    runs = measure_loads(folder, scratch)
    loads = {name: summary(rows) for name, rows in runs.items() if rows}
    if not runs["torchvision"]:
      loads["torchvision"] = {"skipped": "skipped (--notorchvision)" if not _TORCHVISION.value
                              else "skipped: torchvision is not installed "
                                   "(pip install -e '.[bench]')"}
    loads["aejax_first_over_second"] = statistics.median(
        f["seconds"] / s["seconds"] for f, s in zip(runs["aejax_first"], runs["aejax_second"]))
    loads["aejax_same_data"] = all(
        f["fingerprint"] == s["fingerprint"] == runs["aejax_first"][0]["fingerprint"]
        for f, s in zip(runs["aejax_first"], runs["aejax_second"]))
    report["loads"] = loads
    report["runs"] = runs  # every repeat's figures, of which loads holds the medians
    if _RSS.value:
      folder_4x = make_folder(root, 4 * _NUM_IMAGES.value)
      rss = {"1x": measure_rss(folder, scratch, "1x")}
      report["folder_4x"] = folder_record(folder_4x)  # read now: in the page cache
      # The same ~2,000 test images as the 1x run: an evaluation holds its test split
      # in memory by design; the target is about the train split. Then, for the
      # record, the 4x folder with a tenth held out, its test split grown too.
      rss["4x"] = measure_rss(folder_4x, scratch, "4x", 0.1 / 4)
      rss["4x_test_grown"] = measure_rss(folder_4x, scratch, "4x_test_grown")
      rss["ratio_4x_over_1x"] = rss["4x"]["peak_rss_bytes"] / rss["1x"]["peak_rss_bytes"]
    else:
      rss = {"skipped": "skipped (--norss)"}
    report["rss"] = rss
  report["projection"] = projection(loads["aejax_first"]["images_per_s"])
  report["projection_serial_loop"] = projection(loads["pillow"]["images_per_s"])
  report["targets"] = targets(report)
  report["load_average_at_end"] = os.getloadavg()[0]
  return report


def main(argv):
  del argv
  if _CHILD.value:
    figures = CHILDREN[_CHILD.value](pathlib.Path(_CHILD_FOLDER.value), _IMAGE_SIZE.value)
    figures.setdefault("peak_rss_at_load_bytes", _peak_rss_bytes())
    pathlib.Path(_CHILD_OUT.value).write_text(json.dumps(figures))
    return
  try:
    validate()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  report = run_benchmark()
  print("\n" + table(report))
  print(f"\n1-minute load average {report['load_average_at_start']:.1f} at start, "
        f"{report['load_average_at_end']:.1f} at end")
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
