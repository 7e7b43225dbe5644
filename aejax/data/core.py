"""Datasets as integer arrays with a record of where they came from; the IDX reader.

The bottom of ``aejax.data``: it imports nothing else of aejax. Images are
``uint8 [N, H, W, C]``, or ``uint16`` for 16-bit files (an image folder's), and labels
``int32 [N]`` (any number of classes); scaling to [0, 1] happens on the device
(``aejax.images.to_float``, by the dtype's maximum). Vectors (``npz:`` files of float
features) are ``float32 [N, D]``, taken as they are.
"""

from __future__ import annotations

import dataclasses
import gzip
import functools
import hashlib
import os
import pathlib
import zlib
from typing import Any

import numpy as np

ENV_DATA_DIR = "AEJAX_DATA_DIR"
SAMPLE_DIR = pathlib.Path(__file__).parents[1] / "sample"
# The MNIST family (IDX files, TensorFlow-free TFDS builders).
IDX_DATASETS = ("mnist", "fashion_mnist", "kmnist")

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


# Image dtypes: 8-bit and 16-bit pixels, scaled to [0, 1] by their maximum.
IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
LABEL_DTYPE = np.dtype(np.int32)


class DataError(Exception):
  """Data that was asked for cannot be read; the message says what to do."""


def labels_fit_uint8(labels: np.ndarray) -> bool:
  """Whether every label lies in [0, 255]: the labels a uint8 array held before labels
  were int32, hashed as uint8 so that such data keeps its fingerprint."""
  return not labels.size or (int(labels.min()) >= 0 and int(labels.max()) <= 255)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Both splits in host memory. Made only through a reader, which has checked its
  files; ``__post_init__`` checks the splits against each other, so that no source
  can hand training a test split it would only trip over after training."""

  name: str
  source: str  # how its reader got it: 'idx', 'tfds', 'folder', ... (docs/data.md)
  location: str
  train_images: np.ndarray  # uint8 or uint16 [N, H, W, C], or float32 [N, D]
  train_labels: np.ndarray  # int32 [N] (a source may give any integer dtype)
  test_images: np.ndarray
  test_labels: np.ndarray
  # What else results.json should say of how the data was made (a folder's split,
  # its classes, the resize); empty for the MNIST family.
  details: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    check_splits(self.location, {"train": (self.train_images, self.train_labels),
                                 "test": (self.test_images, self.test_labels)})
    for field in ("train_labels", "test_labels"):  # checked above: non-negative, < 2^31
      object.__setattr__(self, field, np.asarray(getattr(self, field), LABEL_DTYPE))

  @property
  def image_shape(self) -> tuple[int, ...]:
    """``(H, W, C)`` of images, ``(D,)`` of vectors."""
    return tuple(self.train_images.shape[1:])

  @property
  def bounded(self) -> bool:
    """Whether the data lies in [0, 1] once scaled (every image; vectors that do):
    a sigmoid output head fits it and PSNR means something."""
    return self.details.get("bounded", True)

  @property
  def n_train(self) -> int:
    return len(self.train_images)

  @property
  def scale(self) -> np.ndarray | None:
    """Standardised vectors' per-feature standard deviations ``[D]`` (what turns their
    errors back into the data's own units), else None."""
    std = self.details.get("std")
    return None if std is None else np.asarray(std, np.float32)

  @functools.cached_property
  def pixel_mean(self) -> np.ndarray:
    """The training images' mean, float ``[H, W, C]`` in [0, 1] (of vectors: their
    mean ``[D]``)."""
    return mean_of(self.train_images)

  @functools.cached_property
  def fingerprint(self) -> str:
    """sha256 of the train and test images and labels, with their shapes and dtypes:
    the data's identity, whatever file or folder it was read from (``fingerprint_of``)."""
    return fingerprint_of((self.train_images, self.train_labels, self.test_images,
                           self.test_labels))

  def record(self) -> dict[str, Any]:
    """What ``results.json`` and the checkpoints say about the data."""
    return {"name": self.name, "source": self.source, "location": self.location,
            "n_train": int(len(self.train_images)), "n_test": int(len(self.test_images)),
            "image_shape": list(self.image_shape), "fingerprint": self.fingerprint,
            **self.details}


def pieces(array, rows: int = 8192):
  """An in-memory array whole; an array on disk (``rows.Rows``, anything with
  ``blocks``) in consecutive pieces, so that one pass never holds it in memory."""
  if isinstance(array, np.ndarray):
    yield array
  else:
    for start, stop in array.blocks(rows):
      yield array[start:stop]


class Fingerprint:
  """``fingerprint_of``'s sha256, fed in order: an array's shape and dtype
  (``begin``), then its bytes (``update``, in as many parts as come), array after
  array; a prepared copy's is fed as its rows are decoded."""

  def __init__(self):
    self._digest = hashlib.sha256()

  def begin(self, shape, dtype) -> None:
    self._digest.update(repr((tuple(int(d) for d in shape), np.dtype(dtype).str)).encode())

  def update(self, data) -> None:
    self._digest.update(data)

  def add(self, array, on_piece=None) -> None:
    """A whole array (an array on disk in pieces, each also given to ``on_piece``)."""
    self.begin(array.shape, array.dtype)
    for piece in pieces(array):
      self.update(np.ascontiguousarray(piece).data)
      if on_piece is not None:
        on_piece(piece)

  def hexdigest(self) -> str:
    return self._digest.hexdigest()


def hashed_labels(train_labels, test_labels) -> tuple[np.ndarray, np.ndarray]:
  """The labels as the fingerprint hashes them: as uint8 when all fit in [0, 255], as
  they were stored before labels were int32, so such data, and the checkpoints
  trained on it, keep their fingerprint."""
  if labels_fit_uint8(train_labels) and labels_fit_uint8(test_labels):
    return tuple(np.asarray(l).astype(np.uint8) for l in (train_labels, test_labels))
  return np.asarray(train_labels), np.asarray(test_labels)


def fingerprint_of(arrays, on_piece=None) -> str:
  """sha256 of each array's shape, dtype and bytes, in order: ``(train images, train
  labels, test images, test labels)`` (labels as ``hashed_labels`` says), arrays on
  disk read in pieces. ``on_piece(i, piece)`` is given every piece of array ``i`` as
  it is read, for other work in the same pass (a copy's checksums and pixel sums)."""
  train_images, train_labels, test_images, test_labels = arrays
  train_labels, test_labels = hashed_labels(train_labels, test_labels)
  fingerprint = Fingerprint()
  for i, array in enumerate((train_images, train_labels, test_images, test_labels)):
    fingerprint.add(array, None if on_piece is None else
                    (lambda piece, i=i: on_piece(i, piece)))
  return fingerprint.hexdigest()


def mean_of(images) -> np.ndarray:
  """The mean over axis 0 (``Dataset.pixel_mean``), arrays on disk read in pieces: of
  uint8 or uint16 images, float ``[H, W, C]`` in [0, 1] (over the dtype's maximum, as
  ``aejax.images.to_float`` scales them; a float64 sum of integers, exact however it
  is cut); of float vectors, float32 ``[D]``."""
  return scaled_mean(sum(piece.sum(0, dtype=np.float64) for piece in pieces(images)),
                      images)


def scaled_mean(total: np.ndarray, images) -> np.ndarray:
  """``mean_of`` from the float64 sum over axis 0 of ``images``."""
  mean = total / len(images)
  if np.dtype(images.dtype) in IMAGE_DTYPES:
    return mean / np.iinfo(images.dtype).max
  return mean.astype(np.float32)


def check_splits(location: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
  """Raises DataError, naming ``location``, unless every split is a non-empty uint8 or
  uint16 ``[N, H, W, C]`` (or float32 ``[N, D]``) array with ``N`` integer labels in
  [0, 2^31), all of the train split's shape and dtype."""
  shape = None
  for split, (images, labels) in splits.items():
    if not ((images.dtype in IMAGE_DTYPES and images.ndim == 4)
            or (images.dtype == np.float32 and images.ndim == 2)):
      raise DataError(f"{location}: the {split} images must be uint8 or uint16 "
                      f"[N, H, W, C] (or vectors float32 [N, D]), got {images.dtype} "
                      f"{list(images.shape)}.")
    if not len(images):
      raise DataError(f"{location}: the {split} split is empty.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(images),):
      raise DataError(f"{location}: the {split} split has {len(images)} images but labels "
                      f"{labels.dtype} {list(labels.shape)}.")
    if labels.size and (int(labels.min()) < 0
                        or int(labels.max()) > np.iinfo(LABEL_DTYPE).max):
      raise DataError(f"{location}: the {split} labels run from {labels.min()} to "
                      f"{labels.max()}; labels are class indices, 0 to 2^31 - 1.")
    if shape is None:
      shape, dtype = images.shape[1:], images.dtype
    elif images.shape[1:] != shape or images.dtype != dtype:
      raise DataError(f"{location}: the {split} images are {_shape(images.shape[1:])} but "
                      f"the train images {_shape(shape)}; both splits need one shape.")


def _shape(shape) -> str:
  return "x".join(str(d) for d in shape)


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a model and its optimizer need to know of a dataset, without the data
  (restoring a trained run): ``image_shape`` and ``n_train``; no ``pixel_mean``."""

  image_shape: tuple[int, ...]
  n_train: int
  pixel_mean: np.ndarray | None = None
  bounded: bool = True  # the data lies in [0, 1] (see Dataset.bounded)


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
  except (OSError, EOFError, zlib.error) as e:  # zlib.error: damaged inside the stream
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
      raise DataError(f"{paths[split + '_images']}: {split} images {images.shape} and "
                      f"labels {labels.shape} ({paths[split + '_labels'].name}) do not match.")
  train, test = arrays["train_images"], arrays["test_images"]
  if train.shape[1:] != test.shape[1:]:
    raise DataError(f"{paths['test_images']} holds {_shape(test.shape[1:])} images but "
                    f"{paths['train_images'].name} {_shape(train.shape[1:])}; both splits "
                    "need one shape.")
  return Dataset(name=name, source=source, location=str(folder),
                 train_images=arrays["train_images"][..., None],
                 train_labels=arrays["train_labels"].astype(LABEL_DTYPE),
                 test_images=arrays["test_images"][..., None],
                 test_labels=arrays["test_labels"].astype(LABEL_DTYPE))


# ------------------------------------------------------------------- the sample


def load_sample() -> Dataset:
  """The real MNIST sample bundled with aejax (see scripts/make_sample.py)."""
  ds = read_idx_folder(SAMPLE_DIR, name="mnist_sample", source="bundled_sample")
  return dataclasses.replace(ds, location="aejax/sample")


