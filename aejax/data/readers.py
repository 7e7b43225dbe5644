"""Readers of a user's own data: image folders, npz arrays, CIFAR's binary records.

Each returns a ``core.Dataset`` of uint8 images ``[N, H, W, C]`` (uint16 for a folder
of 16-bit files; scaled on the device, as MNIST is) and int32 labels, or raises ``DataError`` in one line naming the file, before any
compute. Only ``core`` is imported; Pillow only when a folder is read.

- ``read_folder``: PNG, JPEG, WebP, BMP... through Pillow; labels from class
  subfolders; ``train/`` and ``test/`` subfolders when there are both, else a split by
  each file's path (``in_test_split``), recorded in ``details``.
- ``read_npz``: ``train`` / ``test`` uint8 images ``[N, H, W, C]`` or float vectors
  ``[N, D]`` (optionally standardised per feature, ``standardize``), and optional
  ``train_labels`` / ``test_labels``.
- ``read_cifar``: CIFAR-10 and CIFAR-100 from their binary distribution folders
  (``cifar-10-batches-bin``, ``cifar-100-binary``): fixed-size records of label bytes
  and 3,072 pixel bytes (1,024 red, then green, then blue, row-major), read with NumPy.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zipfile

import numpy as np

from aejax.data.core import LABEL_DTYPE, DataError, Dataset, _shape

# ------------------------------------------------------------------ image folders

SPLIT_FOLDERS = ("train", "test")
# Modes whose images count as one channel when config.channels=0 ('as stored');
# every other mode counts as three. An alpha channel is dropped (docs/data.md says why).
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def in_test_split(relative_path: str, test_fraction: float) -> bool:
  """Whether a file goes to the test split: the first 32 bits of the sha256 of its
  path under the folder (posix separators), as a fraction of 2^32, fall below
  ``test_fraction``. Depends on the file's own name only, so adding files to a folder
  moves none of the others."""
  digest = hashlib.sha256(relative_path.encode()).digest()
  return int.from_bytes(digest[:4], "big") / 2**32 < test_fraction


def resize_and_crop(image, size: int):
  """A Pillow image scaled (bicubic) so its shorter side is ``size``, then cropped to
  the centred ``size`` x ``size`` square (the left/top offset rounded down)."""
  from PIL import Image
  width, height = image.size
  scale = size / min(width, height)
  if (width, height) != (size, size) and min(width, height) != size:
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                         Image.Resampling.BICUBIC)
  width, height = image.size
  left, top = (width - size) // 2, (height - size) // 2
  return image.crop((left, top, left + size, top + size))


# Pillow's modes of 16-bit grey files (PNG, TIFF; older Pillow opened 16-bit PNG as 'I').
_GREY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _stored_bits(image) -> int:
  """16 for a file of 16-bit samples, else 8, of a Pillow image opened but not loaded.
  Pillow decodes 16-bit colour (48-bit RGB PNG, 16-bit RGB TIFF) to 8 bits; a TIFF's
  BitsPerSample tag, a PNG decoder's raw mode (``'RGB;16B'``) still say what the file
  holds."""
  if image.mode in _GREY16_MODES:
    return 16
  if image.format == "TIFF":
    per_sample = image.tag_v2.get(258, 8)  # BitsPerSample: one number, or one a sample
    return 16 if 16 in np.atleast_1d(per_sample) else 8
  args = image.tile[0].args if image.tile else ""
  rawmode = args if isinstance(args, str) else (args[0] if args else "")
  return 16 if isinstance(rawmode, str) and ";16" in rawmode else 8


def _decode_16(path: pathlib.Path, image) -> np.ndarray:
  """A 16-bit colour (or grey + alpha) file as stored, uint16 ``[H, W, C]``, through a
  decoder that keeps its 16 bits: tifffile for TIFF, imagecodecs (libpng) for PNG."""
  try:
    import imagecodecs
    import tifffile
  except ImportError:
    raise DataError(f"{path} is a 16-bit colour image, which Pillow reads as 8 bits; "
                    "reading its 16 bits needs imagecodecs and tifffile: "
                    "pip install 'aejax[images16]'.") from None
  if image.format == "TIFF":
    with tifffile.TiffFile(path) as tiff:  # its first page, as Pillow reads
      page = tiff.pages[0]
      array = page.asarray()
      if page.axes.startswith("S"):  # planar: samples first
        array = np.moveaxis(array, 0, -1)
  elif image.format == "PNG":
    array = imagecodecs.png_decode(path.read_bytes())
  else:
    raise DataError(f"{path} holds 16-bit {image.format} colour, which aejax reads from "
                    "PNG and TIFF only; convert it to either.")
  if array.dtype != np.uint16 or array.ndim not in (2, 3):
    raise DataError(f"{path} holds {array.dtype} samples {list(array.shape)}; aejax reads "
                    "8-bit and 16-bit unsigned images.")
  return array if array.ndim == 3 else array[..., None]


def _as_channels(array: np.ndarray, channels: int) -> np.ndarray:
  """uint16 ``[H, W, C]`` (C: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) with its alpha
  dropped, as grey (``channels`` 1) or RGB (3): Pillow's conversions, in 16 bits (its
  ITU-R 601-2 luma, L = 299/1000 R + 587/1000 G + 114/1000 B)."""
  colour = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
  if channels == 3 and colour.shape[-1] == 1:
    return np.repeat(colour, 3, axis=-1)
  if channels == 1 and colour.shape[-1] == 3:
    luma = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.rint(luma)[..., None].astype(np.uint16)
  return colour


def _resized_16(array: np.ndarray, image_size: int) -> np.ndarray:
  """uint16 ``[H, W, C]`` resized and cropped as ``resize_and_crop`` does, each
  channel a float32 Pillow image ('F': 16-bit values exact, nothing clipped before
  the result is rounded back into [0, 65535])."""
  from PIL import Image
  planes = [np.asarray(resize_and_crop(Image.fromarray(array[..., c].astype(np.float32)),
                                       image_size)) for c in range(array.shape[-1])]
  return np.clip(np.rint(np.stack(planes, -1)), 0, 65535).astype(np.uint16)


def _read_16(path: pathlib.Path, image, image_size: int, channels: int, orientation):
  """``(uint16 [H, W, C], channels as stored)`` of a 16-bit file opened by Pillow;
  ``orientation``: its EXIF orientation, read before Pillow loaded it (loading a TIFF
  turns it and drops the tag, but the 16-bit decoder reads the file as stored)."""
  from PIL import ImageOps
  if image.mode in _GREY16_MODES:
    image = ImageOps.exif_transpose(image)
    array = np.asarray(image).astype(np.int64)
    if array.min() < 0 or array.max() > 65535:  # a 32-bit 'I' image
      raise DataError(f"{path} holds values from {array.min()} to {array.max()}, outside "
                      "16 bits; aejax reads 8-bit and 16-bit images.")
    array = array.astype(np.uint16)[..., None]
  else:
    array = _oriented(_decode_16(path, image), orientation)
  stored = 1 if array.shape[-1] <= 2 else 3
  array = _as_channels(array, channels or stored)
  return (_resized_16(array, image_size) if image_size else array), stored


def _oriented(array: np.ndarray, orientation: int | None) -> np.ndarray:
  """``array`` ``[H, W, C]`` turned as an EXIF ``orientation`` says (the transposition
  ``PIL.ImageOps.exif_transpose`` applies, here to each channel)."""
  from PIL import Image
  method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}.get(orientation)
  if method is None:
    return array
  planes = [np.asarray(Image.fromarray(array[..., c]).transpose(method))
            for c in range(array.shape[-1])]
  return np.stack(planes, -1)


def _read_8(image, image_size: int, channels: int):
  """``(uint8 [H, W, C], channels as stored)`` of an 8-bit file opened by Pillow: a
  palette image through RGBA (its colours; the transparency is dropped with the alpha
  channel, as every alpha is)."""
  from PIL import ImageOps
  image = ImageOps.exif_transpose(image)
  stored = 1 if image.mode in _GREY_MODES else 3
  if image.mode in ("P", "PA"):
    image = image.convert("RGBA")
  image = image.convert("L" if (channels or stored) == 1 else "RGB")
  if image_size:
    image = resize_and_crop(image, image_size)
  array = np.asarray(image, np.uint8)
  return (array[..., None] if array.ndim == 2 else array), stored


def _read_image(path: pathlib.Path, image_size: int, channels: int, bit_depth: int = 0):
  """``(uint8 or uint16 [H, W, C], channels as stored, bits as stored)`` of one image
  file, turned upright by its EXIF orientation, its alpha dropped. ``bit_depth`` 8
  gives uint8 (a 16-bit file's values round(v / 257)), 16 uint16 (an 8-bit file's
  v * 257, exact), 0 the file's own depth."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      bits = _stored_bits(image)
      orientation = image.getexif().get(0x0112)
      image.load()
      if bits == 16:
        array, stored = _read_16(path, image, image_size, channels, orientation)
      else:
        array, stored = _read_8(image, image_size, channels)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f"{path} cannot be read as an image ({e}); replace or remove it.") from None
  if bits == 16 and bit_depth == 8:
    array = np.rint(array / 257.0).astype(np.uint8)
  elif bits == 8 and bit_depth == 16:
    array = array.astype(np.uint16) * np.uint16(257)
  return array, stored, bits


def read_image(path: pathlib.Path, image_size: int, channels: int, bit_depth: int = 0):
  """``_read_image``: ``(array [H, W, C], channels as stored, bits as stored)`` of one
  image file, or DataError naming it."""
  return _read_image(path, image_size, channels, bit_depth)


def folder_depth(bit_depth: int, first_bits: int) -> int:
  """The ``bit_depth`` to read every file of a folder with: the one given; else 16
  when its first file is 16-bit (an 8-bit file then scales by 257, exactly), else 0,
  each file at its own depth, so that a 16-bit file among 8-bit ones comes out
  uint16, unlike the first, and is refused (``mixed_depths``) rather than cut to 8
  bits unasked."""
  return bit_depth or (16 if first_bits == 16 else 0)


def mixed_depths(first: pathlib.Path, path: pathlib.Path) -> DataError:
  """The one line for a 16-bit ``path`` in a folder whose ``first`` file is 8-bit."""
  return DataError(f"{path} is a 16-bit image but {first}, the folder's first, is 8-bit: "
                   "pass --config.bit_depth=16 to keep 16 bits (8-bit files scaled by "
                   "257) or --config.bit_depth=8 (16-bit files by 1/257).")


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
