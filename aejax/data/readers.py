"""Readers of a user's own data in memory: npz arrays, arrays from Python, CIFAR's
binary records (image folders: ``folders``; one image file: ``image_files``).

Each returns a ``core.Dataset`` of uint8 images ``[N, H, W, C]`` (uint16 for 16-bit
data; scaled on the device, as MNIST is) and int32 labels, or raises ``DataError`` in
one line naming the file, before any compute. Only ``core`` is imported.

- ``read_npz``: ``train`` / ``test`` uint8 images ``[N, H, W, C]`` or float vectors
  ``[N, D]`` (optionally standardised per feature, ``standardize``), and optional
  ``train_labels`` / ``test_labels``.
- ``read_cifar``: CIFAR-10 and CIFAR-100 from their binary distribution folders
  (``cifar-10-batches-bin``, ``cifar-100-binary``): fixed-size records of label bytes
  and 3,072 pixel bytes (1,024 red, then green, then blue, row-major), read with NumPy.
"""

from __future__ import annotations

import hashlib
import pathlib
import zipfile

import numpy as np

from aejax.data.core import LABEL_DTYPE, DataError, Dataset

def label_array(labels) -> np.ndarray:
  """Class indices as the label array a Dataset holds: int32 ``[N]``, any number of
  classes."""
  return np.asarray(labels, LABEL_DTYPE)


# --------------------------------------------------------------------------- npz

NPZ_KEYS = ("train", "test")


def _labels(location, key: str, labels: np.ndarray, n: int) -> np.ndarray:
  """``labels`` as int32 ``[n]``, or DataError naming ``key`` at ``location``."""
  split = key.split("_")[0]
  if labels.shape != (n,):
    raise DataError(f"{location}: {key!r} holds {labels.shape[0] if labels.ndim else 0} labels "
                    f"(shape {list(labels.shape)}) for {n} {split} images.")
  top = np.iinfo(LABEL_DTYPE).max
  if not np.issubdtype(labels.dtype, np.integer) or (n and (labels.min() < 0
                                                           or labels.max() > top)):
    raise DataError(f"{location}: {key!r} must hold class indices, integers in "
                    f"[0, {top}], got {labels.dtype}"
                    f"{f' from {labels.min()} to {labels.max()}' if n else ''}.")
  return labels.astype(LABEL_DTYPE)


def standardize(train: np.ndarray, test: np.ndarray):
  """``(train', test', mean [D], std [D])``: both splits less the train split's
  per-feature mean, over its standard deviation (a constant feature's taken as 1),
  in float64 then cast back to float32."""
  mean = train.mean(0, dtype=np.float64)
  std = train.std(0, dtype=np.float64)
  std = np.where(std > 0, std, 1.0)
  scale = lambda x: ((x - mean) / std).astype(np.float32)
  return scale(train), scale(test), mean, std


def first_non_finite_row(array: np.ndarray) -> int | None:
  """The index of the first row ``[i, ...]`` holding a NaN or an infinity, or None."""
  bad = ~np.isfinite(array).reshape(len(array), -1).all(1)
  return int(np.argmax(bad)) if bad.any() else None


def _vectors(path, arrays: dict[str, np.ndarray], standardize_: bool) -> tuple[dict, dict]:
  for key, array in arrays.items():
    if not np.issubdtype(array.dtype, np.floating) or array.ndim != 2:
      raise DataError(f"{path}: {key!r} is {array.dtype} {list(array.shape)}; float "
                      "vectors must be [N, D] in both 'train' and 'test' (images: uint8 "
                      "[N, H, W, C] in both).")
    row = first_non_finite_row(array)
    if row is not None:
      raise DataError(f"{path}: {key!r} holds a non-finite value (NaN or inf) in row "
                      f"{row}: {array[row][~np.isfinite(array[row])][0]}.")
  arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
  details = {"kind": "vectors", "standardize": standardize_}
  if standardize_:
    arrays["train"], arrays["test"], mean, std = standardize(arrays["train"], arrays["test"])
    details.update(mean=mean.tolist(), std=std.tolist(), bounded=False)
  else:
    details["bounded"] = bool(all(v.min() >= 0 and v.max() <= 1 for v in arrays.values()))
  return arrays, details


def read_npz(path: str | pathlib.Path, name: str | None = None,
             standardize: bool = False) -> Dataset:
  """``train`` / ``test`` uint8 images ``[N, H, W, C]`` or float vectors ``[N, D]``
  (and optional integer ``train_labels`` / ``test_labels``) from one ``.npz`` file,
  never unpickled. ``standardize``: vectors less the train split's per-feature mean,
  over its standard deviation (recorded in ``details``)."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise DataError(f"npz file {path} does not exist.")
  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise DataError(f"{path} cannot be read as an npz file ({e}).") from None
  with npz:
    missing = [k for k in NPZ_KEYS if k not in npz.files]
    if missing:
      raise DataError(f"{path} lacks the key{'s' * (len(missing) > 1)} "
                      f"{', '.join(map(repr, missing))} (it holds {npz.files}); save it with "
                      "np.savez(path, train=..., test=...[, train_labels=..., test_labels=...]).")
    try:
      arrays = {k: npz[k] for k in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
      raise DataError(f"{path}: an array cannot be read ({e}); the file is damaged.") from None
    labels = {k: npz[f"{k}_labels"] if f"{k}_labels" in npz else None for k in NPZ_KEYS}
    arrays, labels, details = _checked(path, arrays, labels, standardize)
  return Dataset(name=name or f"npz:{path}", source="npz", location=str(path),
                 train_images=arrays["train"], train_labels=labels["train"],
                 test_images=arrays["test"], test_labels=labels["test"], details=details)


def _checked(location, arrays: dict[str, np.ndarray], labels: dict[str, np.ndarray | None],
             standardize_: bool, labels_from: str = "from the file"
             ) -> tuple[dict, dict, dict]:
  """The npz rules, for a file's arrays and for arrays in memory (``from_arrays``):
  ``(arrays, labels, details)`` of ``train`` / ``test`` uint8 (or uint16) images
  ``[N, H, W, C]`` or float vectors ``[N, D]`` (standardised when asked) and their int32
  labels (all 0 when either split has none), or DataError naming the array."""
  details = {}
  if any(np.issubdtype(a.dtype, np.floating) for a in arrays.values()):
    arrays, details = _vectors(location, arrays, standardize_)
  else:
    for key, array in arrays.items():
      if array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{location}: {key!r} has dtype {array.dtype}; it must be uint8 "
                        "(or 16-bit uint16) images [N, H, W, C] or float vectors [N, D].")
      if array.ndim != 4:
        raise DataError(f"{location}: {key!r} has shape {list(array.shape)}; uint8 images must "
                        "be [N, H, W, C] (add a channel axis to grey images: x[..., None]).")
    if standardize_:
      raise DataError(f"{location} holds uint8 images; config.standardize applies to float "
                      "vectors only.")
  labels = {k: None if v is None else _labels(location, f"{k}_labels", v, len(arrays[k]))
            for k, v in labels.items()}
  labelled = all(v is not None for v in labels.values())
  labels = {k: v if v is not None else np.zeros(len(arrays[k]), LABEL_DTYPE)
            for k, v in labels.items()}
  details["labels"] = labels_from if labelled else "none (all 0)"
  return arrays, labels, details


# --------------------------------------------------------------- arrays in memory

ARRAYS_PREFIX = "arrays"  # a Dataset made by ``from_arrays`` is named "arrays[:<name>]"


def _as_array(location, key: str, value) -> np.ndarray:
  """``value`` (a NumPy or JAX array, or nested lists) as a NumPy array of numbers."""
  array = np.asarray(value)
  if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                   or array.dtype == np.bool_):
    raise DataError(f"{location}: {key!r} has dtype {array.dtype}; arrays of Python objects "
                    "(pickled data) are not read: give uint8 images [N, H, W, C] or float "
                    "vectors [N, D].")
  return array


def _float_images(location, key: str, array: np.ndarray) -> np.ndarray:
  """Float images ``[N, H, W, C]`` in [0, 1] on the 1/255 grid (``x_uint8 / 255``,
  as notebooks scale them) back as the uint8 images they are; anything else is
  DataError naming ``key``, since images train as uint8."""
  low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
  if not (np.isfinite(low) and np.isfinite(high) and 0 <= low and high <= 1):
    raise DataError(f"{location}: {key!r} holds float images {list(array.shape)} with values "
                    f"from {low} to {high}, outside [0, 1]: give uint8 images [N, H, W, C], "
                    f"float images in [0, 1], or vectors ({key}.reshape(len({key}), -1)).")
  levels = np.rint(array.astype(np.float64) * 255)
  # x / 255 in float64 then cast, or cast then divided in the array's own dtype.
  if not any(np.array_equal(scaled, array) for scaled in (
      (levels / 255).astype(array.dtype), levels.astype(array.dtype) / array.dtype.type(255))):
    raise DataError(f"{location}: {key!r} holds float images in [0, 1] between the 256 "
                    "levels of uint8 images, which images train as: give "
                    f"({key} * 255).round().astype(np.uint8), or vectors "
                    f"({key}.reshape(len({key}), -1)).")
  return levels.astype(np.uint8)


def _held_out(array: np.ndarray, test_fraction: float) -> np.ndarray:
  """Which rows go to the test split: the first 32 bits of the sha256 of a row's
  bytes, over 2^32, fall below ``test_fraction`` (as a folder's files by their names):
  deterministic, independent of the rows' order, and equal rows share a split."""
  rows = np.ascontiguousarray(array).reshape(len(array), -1)
  return np.array([int.from_bytes(hashlib.sha256(row.tobytes()).digest()[:4], "big") / 2**32
                   < test_fraction for row in rows], bool)


def from_arrays(train, test=None, *, train_labels=None, test_labels=None,
                name: str | None = None, standardize: bool = False,
                test_fraction: float = 0.1) -> Dataset:
  """A Dataset of arrays in memory (NumPy or JAX), checked by the rules of an npz file
  (``read_npz``): uint8 images ``[N, H, W, C]`` or float vectors ``[N, D]``
  (``standardize``: per feature, as ``config.standardize``), optional integer labels;
  besides, float images in [0, 1] that are uint8 images over 255 are taken as those.

  Without ``test``, the rows whose content hashes below ``test_fraction`` are held
  out as the test split (``_held_out``; recorded in ``details["split"]``). The
  fingerprint, as for files, is the data's identity: a run resumed with other arrays
  is refused. Raises DataError naming the array, before any compute.
  """
  location = f"{ARRAYS_PREFIX}:{name}" if name else ARRAYS_PREFIX
  arrays = {"train": _as_array(location, "train", train)}
  labels = {"train": None if train_labels is None else _as_array(location, "train_labels",
                                                                  train_labels)}
  if test is not None:
    arrays["test"] = _as_array(location, "test", test)
    labels["test"] = None if test_labels is None else _as_array(location, "test_labels",
                                                                 test_labels)
  elif test_labels is not None:
    raise DataError(f"{location}: test_labels were given without test images.")
  for key, array in arrays.items():
    if np.issubdtype(array.dtype, np.floating) and array.ndim == 4:
      arrays[key] = _float_images(location, key, array)
  details = {}
  if test is None:
    if labels["train"] is not None:  # checked against the images before they are split
      labels["train"] = _labels(location, "train_labels", labels["train"],
                                len(arrays["train"]))
    if not 0 < test_fraction < 1:
      raise DataError(f"{location}: test_fraction must lie strictly between 0 and 1, got "
                      f"{test_fraction!r}.")
    held = _held_out(arrays["train"], test_fraction)
    if held.all() or not held.any():
      raise DataError(f"{location}: holding out test_fraction={test_fraction} of the "
                      f"{len(held)} rows left a split empty; give test= arrays, or more rows.")
    arrays = {"train": arrays["train"][~held], "test": arrays["train"][held]}
    labels = {k: None if labels["train"] is None else labels["train"][rows]
              for k, rows in (("train", ~held), ("test", held))}
    details["split"] = (f"held out from train: a row is a test row when the first 32 bits "
                        f"of the sha256 of its bytes, over 2^32, are below "
                        f"test_fraction={test_fraction}")
  arrays, labels, checked = _checked(location, arrays, labels, standardize,
                                     labels_from="given")
  return Dataset(name=location, source="arrays", location=location,
                 train_images=arrays["train"], train_labels=labels["train"],
                 test_images=arrays["test"], test_labels=labels["test"],
                 details={**checked, **details})


# ------------------------------------------------------------------------- CIFAR

CIFAR_IMAGE_SHAPE = (32, 32, 3)
# name -> (the distribution's folder, train files, test files, label bytes, classes)
CIFAR = {
    "cifar10": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)],
                ["test_batch.bin"], 1, 10),
    # Coarse label, then fine label; the fine (100 classes) is the label.
    "cifar100": ("cifar-100-binary", ["train.bin"], ["test.bin"], 2, 100),
}
CIFAR_URLS = {"cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
              "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"}


def parse_cifar_records(raw: bytes, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
  """``(images uint8 [N, 32, 32, 3], labels int32 [N])`` of concatenated CIFAR binary
  records (``label_bytes`` label bytes, the last of them the label, then 3,072 pixels
  as 3 planes of 32 x 32); ``len(raw)`` must be a whole number of records."""
  records = np.frombuffer(raw, np.uint8).reshape(-1, label_bytes + 3072)
  images = records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), records[:, label_bytes - 1].astype(LABEL_DTYPE)


def cifar_folder(data_dir: pathlib.Path, name: str) -> pathlib.Path:
  folder_name, train, _, _, _ = CIFAR[name]
  for folder in (data_dir, data_dir / folder_name):
    if (folder / train[0]).is_file():
      return folder
  raise DataError(
      f"{data_dir} holds no {name} binary files ({folder_name}/{train[0]} ...). Download "
      f"and unpack {CIFAR_URLS[name]} and pass --config.data_dir=<the folder holding "
      f"{folder_name}>.")


def read_cifar(data_dir: str | pathlib.Path, name: str = "cifar10") -> Dataset:
  """CIFAR-10 or CIFAR-100 from the unpacked binary distribution under ``data_dir``."""
  data_dir = pathlib.Path(data_dir).expanduser()
  if not data_dir.is_dir():
    raise DataError(f"Data folder {data_dir} does not exist.")
  folder = cifar_folder(data_dir, name)
  _, train, test, label_bytes, classes = CIFAR[name]
  record = label_bytes + 3072
  splits = {}
  for split, files in (("train", train), ("test", test)):
    parts = []
    for file in files:
      path = folder / file
      if not path.is_file():
        raise DataError(f"{folder} lacks {file}; unpack {CIFAR_URLS[name]} again.")
      raw = path.read_bytes()
      if not raw or len(raw) % record:
        raise DataError(f"{path} holds {len(raw)} bytes, not a whole number of "
                        f"{record}-byte records: it is truncated; unpack it again.")
      images, labels = parse_cifar_records(raw, label_bytes)
      if labels.max() >= classes:
        bad = int(np.argmax(labels >= classes))
        raise DataError(f"{path}: record {bad} has label {labels[bad]} (of {classes} "
                        f"classes): this is not a {name} file.")
      parts.append((images, labels))
    splits[split] = tuple(np.concatenate(a) for a in zip(*parts))
  return Dataset(name=name, source="cifar_binary", location=str(folder),
                 train_images=splits["train"][0], train_labels=splits["train"][1],
                 test_images=splits["test"][0], test_labels=splits["test"][1])
