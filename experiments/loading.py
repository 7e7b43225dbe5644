"""The data-loading benchmark's parts without flags (``data_bench`` is its command;
tests import these beside other scripts' flags): folders of JPEG photo crops, the
same files on every machine, made from scikit-image's bundled photographs (none
needs a download) in parallel, once, then reused; and the report: the targets, the
ImageNet projection and the printed table."""

from __future__ import annotations

import concurrent.futures
import functools
import json
import multiprocessing
import os
import pathlib
import shutil
import time

import numpy as np

# scikit-image's bundled colour photographs (none needs a download); one class each.
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry",
          "retina", "rocket", "stereo_motorcycle")
CROP, QUALITY, SEED = 128, 90, 0


# ---------------------------------------------------------------- the folders

@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
  """The photographs, uint8 ``[H, W, 3]`` each, in ``PHOTOS``' order."""
  import skimage.data
  photos = []
  for name in PHOTOS:
    photo = getattr(skimage.data, name)()
    photos.append(photo[0] if isinstance(photo, tuple) else photo)  # a stereo pair: left
  return tuple(photos)


def crop(index: int):
  """Crop ``index``: a Pillow image, 128 x 128 RGB, of photograph ``index % 8``: a
  random square of it (from half the crop's side to the photograph's shorter side,
  so scaled between 2x and about 1/11), flipped left-right half the time. Its
  randomness depends on ``index`` alone, so the folders agree whatever the workers."""
  from PIL import Image
  photo = _photos()[index % len(PHOTOS)]
  rng = np.random.default_rng([SEED, index])
  height, width = photo.shape[:2]
  side = int(rng.integers(CROP // 2, min(height, width) + 1))
  top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
  image = Image.fromarray(photo[top:top + side, left:left + side])
  if rng.random() < 0.5:
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return image.resize((CROP, CROP), Image.Resampling.BICUBIC)


def _write_crops(folder: pathlib.Path, start: int, stop: int) -> None:
  for index in range(start, stop):
    crop(index).save(folder / PHOTOS[index % len(PHOTOS)] / f"{index:07d}.jpg",
                     quality=QUALITY)


def make_folder(root: pathlib.Path, num_images: int) -> pathlib.Path:
  """``root/crops_<num_images>``, made unless a whole one is there (its record
  ``crops_<num_images>.json`` beside it, written last, says how it was made), in
  parallel on every core, into a temporary name renamed into place once whole."""
  folder = root / f"crops_{num_images}"
  record_path = folder.with_suffix(".json")
  record = {"images": num_images, "crop": CROP, "quality": QUALITY, "seed": SEED,
            "photos": list(PHOTOS)}
  if folder.is_dir() and record_path.is_file() and json.loads(record_path.read_text()) == record:
    return folder
  partial = folder.with_name(folder.name + ".partial")
  for stale in (folder, partial):
    shutil.rmtree(stale, ignore_errors=True)
  for name in PHOTOS:
    (partial / name).mkdir(parents=True)
  print(f"making {num_images:,} crops in {folder} ...", flush=True)
  start = time.perf_counter()
  chunk = 500
  if num_images <= chunk:  # a pool's start would cost more than it saves
    _write_crops(partial, 0, num_images)
  else:
    # Spawned, not forked: the caller may hold threads (JAX's, a test runner's).
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=context) as pool:
      jobs = [pool.submit(_write_crops, partial, i, min(i + chunk, num_images))
              for i in range(0, num_images, chunk)]
      for job in jobs:
        job.result()
  partial.rename(folder)
  record_path.write_text(json.dumps(record, indent=2) + "\n")
  print(f"  made in {time.perf_counter() - start:.1f} s", flush=True)
  return folder


def files_of(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(folder.rglob("*.jpg"))


def folder_record(folder: pathlib.Path) -> dict:
  """Reads every file once (so that every measurement finds them in the page cache)
  and says what the folder holds."""
  files = files_of(folder)
  size = sum(len(path.read_bytes()) for path in files)
  return {"path": str(folder), "images": len(files), "megabytes": size / 1e6,
          "classes": len(PHOTOS), "crop": CROP, "jpeg_quality": QUALITY}


# ------------------------------------------------------------------ the report

IMAGENET_TRAIN = 1_281_167
# An ImageNet-1k JPEG's average size, about (width x height): the pixels decoded per
# image, against a crop's 128 x 128.
IMAGENET_PIXELS = 400 * 350
TARGETS = {"first_load_over_loop": 1.7, "first_over_second": 20.0, "rss_4x_over_1x": 1.15}


def projection(images_per_s: float) -> dict:
  """Seconds to prepare ImageNet-1k's train split at ``images_per_s`` (measured on
  128 x 128 crops): as measured (JPEGs as small as the crops, 64 x 64 out), and from
  full-size JPEGs, taking decoding as proportional to the pixels decoded."""
  at_crop_size = IMAGENET_TRAIN / images_per_s
  return {"images": IMAGENET_TRAIN, "seconds_from_crop_sized_jpegs": at_crop_size,
          "seconds_from_full_size_jpegs": at_crop_size * IMAGENET_PIXELS / CROP**2,
          "full_size_pixels_over_crop": IMAGENET_PIXELS / CROP**2}


def targets(report: dict) -> list[dict]:
  """The three targets, each with its measured value and whether it holds (None:
  not measured)."""
  loads = report["loads"]
  rss = report["rss"]
  values = {
      "first_load_over_loop": loads["aejax_first"]["images_per_s"]
                              / loads["pillow"]["images_per_s"],
      "first_over_second": loads["aejax_first_over_second"],
      "rss_4x_over_1x": rss.get("ratio_4x_over_1x")}
  rows = []
  for name, value in values.items():
    bound = TARGETS[name]
    passed = None if value is None else (value < bound if name == "rss_4x_over_1x"
                                         else value >= bound)
    rows.append({"name": name, "target": bound, "value": value, "passed": passed})
  return rows


def _mib(n: float) -> str:
  return f"{n / 2**20:,.0f}"


def _duration(seconds: float) -> str:
  return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def table(report: dict) -> str:
  """The printed table: each figure, the targets with pass or fail, the projection."""
  loads, rss = report["loads"], report["rss"]
  verdict = {row["name"]: row for row in report["targets"]}

  def mark(name):
    row = verdict[name]
    return "not measured" if row["passed"] is None else ("pass" if row["passed"] else "FAIL")

  def load_row(label, s, target="", result=""):
    return (f"| {label} | {s['images_per_s']:,.0f} | {s['seconds']:.3g} | "
            f"{_mib(s['peak_rss_bytes'])} | {target} | {result} |")

  first = verdict["first_load_over_loop"]
  second = verdict["first_over_second"]
  n = loads["pillow"]["images"]
  size = report["image_size"]
  lines = [f"{n:,} JPEGs of {CROP}x{CROP} to {size}x{size}x3, median of "
           f"{report['repeats']}; {report['machine']}",
           "",
           "| measurement | images/s | seconds | peak RSS MiB | target | result |",
           "|---|---|---|---|---|---|",
           load_row("serial Pillow loop (today's floor)", loads["pillow"]),
           load_row("aejax, first load (new TFDS data dir)", loads["aejax_first"],
                    f"≥ {first['target']}x the loop: {first['value']:.2f}x",
                    mark("first_load_over_loop")),
           load_row("aejax, second load (same data dir)", loads["aejax_second"],
                    f"≥ {second['target']:.0f}x faster than the first: "
                    f"{second['value']:.1f}x", mark("first_over_second"))]
  if "skipped" in loads["torchvision"]:
    lines.append(f"| torchvision ImageFolder, DataLoader at 2 workers | | | | "
                 f"| {loads['torchvision']['skipped']} |")
  else:
    lines.append(load_row("torchvision ImageFolder, DataLoader at 2 workers",
                          loads["torchvision"]))
  growth = verdict["rss_4x_over_1x"]
  if "skipped" in rss:
    lines.append(f"| 1-epoch stream run, 1x and 4x the folder | | | | "
                 f"< {growth['target']}x | {rss['skipped']} |")
  else:
    names = {"1x": "1x", "4x": "4x", "4x_test_grown": "4x, its test split grown too"}
    for times, label in names.items():
      run = rss.get(times)
      if run is None:
        continue
      target = (f"4x/1x < {growth['target']}: {growth['value']:.2f}x" if times == "4x"
                else "")
      lines.append(f"| 1-epoch stream run, {run['n_train']:,} train and {run.get('n_test', 0):,} "
                   f"test images ({label}) | | "
                   f"{run['wall_seconds']:.3g} | {_mib(run['peak_rss_bytes'])} | {target} | "
                   f"{mark('rss_4x_over_1x') if times == '4x' else ''} |")
  p = report["projection"]
  lines += ["", f"Projected, not measured: preparing ImageNet-1k's {p['images']:,} train "
            f"images at aejax's first-load rate here ({loads['aejax_first']['images_per_s']:,.0f}"
            f" images/s) would take {_duration(p['seconds_from_crop_sized_jpegs'])} at "
            f"{size}x{size} from JPEGs the size of these crops, and "
            f"{_duration(p['seconds_from_full_size_jpegs'])} from its full-size JPEGs "
            f"(~400x350 on average: {p['full_size_pixels_over_crop']:.1f}x the pixels to "
            "decode, decoding taken as proportional to pixels)."]
  if not loads.get("aejax_same_data", True):
    lines += ["", "WARNING: aejax's loads did not all give the same data (fingerprints)."]
  return "\n".join(lines)
