"""Datasets as uint8 arrays, with a record of where they came from.

``load(config)`` is the one place data is found. For the MNIST family
(``dataset='mnist'``, ``'fashion_mnist'``, ``'kmnist'``) it tries, in order:

1. tensorflow-datasets' data dir (``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``),
   when it holds the dataset prepared by ``aejax.tfds_data`` (no TensorFlow needed);
2. a folder of IDX files (``config.data_dir``, else ``$AEJAX_DATA_DIR``); a folder
   that was named but is missing, or misses files, is an error, never a fallback;
3. a download through tensorflow-datasets, only when the files' host answers within
   seconds (an offline machine says so and goes on at once);
4. for ``mnist`` only, the real MNIST sample bundled in this package (6,000 training
   and 1,000 test images), with a loud warning that says how to get the full set.

``dataset='mnist_sample'`` asks for the bundled sample directly; ``'tfds:<name>'``
any image dataset of the TFDS catalog, which needs TensorFlow
(``pip install "aejax[tensorflow]"``).

Images are ``uint8 [N, H, W, C]`` and labels ``uint8 [N]``: scaling to [0, 1]
happens on the device (``train.py``).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import pathlib
from typing import Any

import numpy as np
from absl import logging

ENV_DATA_DIR = "AEJAX_DATA_DIR"
SAMPLE_DIR = pathlib.Path(__file__).parent / "sample"
# The MNIST family (IDX files, TensorFlow-free TFDS builders) and the bundled sample;
# besides these, 'tfds:<name>' names any dataset of the TFDS catalog.
IDX_DATASETS = ("mnist", "fashion_mnist", "kmnist")
DATASETS = (*IDX_DATASETS, "mnist_sample")
TFDS_PREFIX = "tfds:"

# IDX file stems of the MNIST family; each may be stored raw or gzip-compressed.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_FULL_DATA_HINT = (
    "To train on the full data set, download the four MNIST IDX files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) into a folder and pass --config.data_dir=<folder> "
    f"or set {ENV_DATA_DIR}=<folder>, or prepare them for tensorflow-datasets once: "
    "python -m experiments.prepare_data --dataset=mnist --manual_dir=<folder>.")


class DataError(Exception):
  """Data that was asked for cannot be read; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  source: str  # 'idx', 'tfds' or 'bundled_sample'
  location: str
  train_images: np.ndarray  # uint8 [N, H, W, C]
  train_labels: np.ndarray  # uint8 [N]
  test_images: np.ndarray
  test_labels: np.ndarray

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])

  def record(self) -> dict[str, Any]:
    """What ``results.json`` says about the data."""
    return {"name": self.name, "source": self.source, "location": self.location,
            "n_train": int(len(self.train_images)), "n_test": int(len(self.test_images)),
            "image_shape": list(self.image_shape)}


# ---------------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (raw or .gz) into an array, checking its header and length."""
  path = pathlib.Path(path)
  try:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
  except FileNotFoundError:
    raise DataError(f"IDX file {path} does not exist.") from None
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise DataError(f"IDX file {path} cannot be read ({e}); it is corrupt or truncated: "
                    "download it again.") from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}).")
  dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"IDX file {path} is truncated inside its header.")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
  expected = header + int(np.prod(shape)) * dtype.itemsize
  if len(raw) != expected:
    raise DataError(f"IDX file {path} holds {len(raw)} bytes but its header "
                    f"(shape {shape}) needs {expected}: it is truncated or corrupt; "
                    "download it again.")
  return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_file(folder: pathlib.Path, stem: str) -> pathlib.Path | None:
  for name in (stem + ".gz", stem):
    if (folder / name).is_file():
      return folder / name
  return None


def read_idx_folder(folder: str | os.PathLike, name: str = "mnist",
                    source: str = "idx") -> Dataset:
  """Reads the four MNIST-family IDX files from ``folder`` into a Dataset."""
  folder = pathlib.Path(folder).expanduser()
  if not folder.is_dir():
    raise DataError(f"Data folder {folder} does not exist. {_FULL_DATA_HINT}")
  paths = {key: find_idx_file(folder, stem) for key, stem in IDX_FILES.items()}
  missing = [IDX_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
  if missing:
    raise DataError(f"Data folder {folder} lacks {', '.join(missing)}. {_FULL_DATA_HINT}")
  arrays = {key: read_idx(path) for key, path in paths.items()}
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise DataError(f"{folder}: {split} images {images.shape} and labels "
                      f"{labels.shape} do not match.")
  return Dataset(name=name, source=source, location=str(folder),
                 train_images=arrays["train_images"][..., None],
                 train_labels=arrays["train_labels"].astype(np.uint8),
                 test_images=arrays["test_images"][..., None],
                 test_labels=arrays["test_labels"].astype(np.uint8))


# --------------------------------------------------------------------------- load


def load_sample() -> Dataset:
  """The real MNIST sample bundled with aejax (see scripts/make_sample.py)."""
  ds = read_idx_folder(SAMPLE_DIR, name="mnist_sample", source="bundled_sample")
  return dataclasses.replace(ds, location="aejax/sample")


def validate_dataset_name(name: str) -> None:
  """Raises ValueError, naming ``config.dataset``, for a name ``load`` cannot serve."""
  if name.startswith(TFDS_PREFIX):
    if not name[len(TFDS_PREFIX):]:
      raise ValueError(f"config.dataset={name!r} names no dataset: use tfds:<name>, "
                       "e.g. tfds:cifar10.")
    if importlib.util.find_spec("tensorflow") is None:
      raise ValueError(
          f"config.dataset={name!r} needs TensorFlow, which tensorflow-datasets uses to "
          'prepare and decode its catalog: pip install "aejax[tensorflow]". '
          f"({', '.join(IDX_DATASETS)} need no TensorFlow.)")
  elif name not in DATASETS:
    raise ValueError(f"config.dataset={name!r} is unknown; choose one of "
                     f"{list(DATASETS)} or tfds:<name>.")


def _tfds_data():
  """``aejax.tfds_data``, or None with a warning when tensorflow-datasets is unusable."""
  try:
    from aejax import tfds_data  # imports tensorflow_datasets: heavy, so only here
  except ImportError as e:
    logging.warning("tensorflow-datasets cannot be imported (%s); skipping it.", e)
    return None
  return tfds_data


def _try_tfds(name: str) -> Dataset | None:
  """``name`` from TFDS's data dir when it is prepared there, else None."""
  tfds_data = _tfds_data()
  return None if tfds_data is None else tfds_data.load_prepared(name)


def _try_tfds_download(name: str) -> Dataset | None:
  """``name`` downloaded and prepared through TFDS; None when offline."""
  tfds_data = _tfds_data()
  return None if tfds_data is None else tfds_data.download_and_load(name)


def load(config) -> Dataset:
  """Returns the dataset ``config.dataset`` names, from the first source that has it."""
  name = config.dataset
  validate_dataset_name(name)
  if name == "mnist_sample":
    return load_sample()
  if name.startswith(TFDS_PREFIX):
    from aejax import tfds_data
    return tfds_data.load_with_tensorflow(name[len(TFDS_PREFIX):])

  data_dir = config.get("data_dir") or os.environ.get(ENV_DATA_DIR)
  if data_dir and not pathlib.Path(data_dir).expanduser().is_dir():
    read_idx_folder(data_dir, name=name)  # raises: a named folder must exist

  ds = _try_tfds(name)
  if ds is not None:
    if data_dir:
      logging.info("%s: using the copy prepared for tensorflow-datasets in %s rather "
                   "than the IDX files in %s.", name, ds.location, data_dir)
    return ds
  if data_dir:
    return read_idx_folder(data_dir, name=name)
  ds = _try_tfds_download(name)
  if ds is not None:
    return ds

  if name != "mnist":
    raise DataError(
        f"{name} was not found: it is not prepared in tensorflow-datasets' data dir, no "
        f"IDX folder was named (config.data_dir or {ENV_DATA_DIR}) and it cannot be "
        f"downloaded from here. With its four IDX files in a folder, either pass "
        f"--config.data_dir=<folder> or prepare it once: python -m "
        f"experiments.prepare_data --dataset={name} --manual_dir=<folder>.")
  logging.warning(
      "\n" + "!" * 78 + "\n"
      "FULL MNIST NOT FOUND: training on the bundled 6,000-image sample instead.\n"
      "Results will not match the full data set's. %s\n" + "!" * 78, _FULL_DATA_HINT)
  return load_sample()
