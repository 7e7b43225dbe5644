"""One image file as aejax reads it: decoded by Pillow (16-bit colour by tifffile or
imagecodecs, which keep the 16 bits), turned upright by its EXIF orientation, its
alpha dropped, a palette turned into its colours, converted to grey or RGB, resized
and centre-cropped; and a file's place in a folder's split (``in_test_split``).
Pillow is imported only when a file is read: the decoding workers import this
module and nothing heavier (``decode``)."""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from aejax.data.core import DataError

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


