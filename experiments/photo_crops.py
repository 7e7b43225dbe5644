"""Folders of JPEG photo crops for the data-loading benchmark (``data_bench``): the
same files on every machine, made from scikit-image's bundled photographs (none
needs a download), in parallel, once, then reused."""

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
