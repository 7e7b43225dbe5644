"""Images as models and metrics see them: the bottom of aejax, NumPy alone.

``to_float`` is the one place uint8 and uint16 images are scaled to [0, 1] (``aejax.objective``
and ``aejax.evaluate`` re-export it and ``psnr_db``); here, below the model families,
so that a family's own evaluation (a codec's, ``aejax.models.coding``) scales and
measures as the rest of aejax does without reaching up to them.
"""

from __future__ import annotations

import math

import numpy as np


# The integer image dtypes and the value each scales to 1.0: 8-bit and 16-bit pixels.
PIXEL_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def to_float(images):
  """uint8 [0, 255] or uint16 [0, 65535] -> float32 [0, 1]: the one place images are
  scaled (on the device for a jax.Array, on the host for a NumPy array). Float data
  (vectors) is taken as it is."""
  top = PIXEL_MAX.get(np.dtype(images.dtype))
  if top is None:
    return images.astype(np.float32)
  return images.astype(np.float32) / np.float32(top)


def is_pixels(array) -> bool:
  """Whether ``array`` holds integer pixels ``to_float`` scales (uint8 or uint16)."""
  return np.dtype(array.dtype) in PIXEL_MAX


def psnr_db(mse: float) -> float:
  """PSNR in dB of a mean squared error on [0, 1] images; infinite for mse == 0."""
  return math.inf if mse <= 0 else 10.0 * math.log10(1.0 / mse)
