"""Statistics of a sparse code: how many units fire, how many never do, and how much
of the data's variance the reconstruction explains.

Definitions (images scaled to [0, 1], codes flattened to [B, N]):
- ``l0``: the mean over test images of the number of nonzero code units;
- ``dead_fraction``: the fraction of code units that are zero on every image of one
  pass over the training set (``dead_count`` of ``code_units``);
- ``fraction_variance_explained``: ``1 - SSE / SST`` on the test set, with SSE the
  reconstruction's squared error summed over images and pixels and SST the squared
  deviation of the test images from their mean image, summed likewise (the
  ``R²`` of Gao et al. 2024; 0 for a model that outputs the mean image).

Each pass is one compiled ``lax.scan`` over fixed-size chunks of the padded images,
so memory does not grow with the data set and one shape is compiled.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from aejax.images import PIXEL_MAX
from aejax.objective import to_float


def chunked(images_u8: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """``images`` zero-padded to whole chunks: ([chunks, b, H, W, C], valid mask [chunks, b])."""
  n = len(images_u8)
  size = min(batch_size, n)
  chunks = -(-n // size)
  pad = chunks * size - n
  padded = np.concatenate([images_u8, np.zeros((pad, *images_u8.shape[1:]), images_u8.dtype)])
  mask = (np.arange(chunks * size) < n).reshape(chunks, size)
  return padded.reshape(chunks, size, *images_u8.shape[1:]), mask


@functools.partial(jax.jit, static_argnums=0)
def _fired_units(encode_fn, variables, images, mask):
  """Whether each code unit is nonzero on some valid image of ``images``."""
  def body(fired, chunk):
    x, valid = chunk
    code = encode_fn(variables, to_float(x))
    nonzero = (code.reshape(len(x), -1) != 0) & valid[:, None]
    return fired | jnp.any(nonzero, axis=0), None

  units = jax.eval_shape(encode_fn, variables, jnp.zeros(images.shape[1:], jnp.float32))
  start = jnp.zeros((int(np.prod(units.shape[1:])),), bool)
  return jax.lax.scan(body, start, (images, mask))[0]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _test_sums(encode_fn, decode_fn, variables, images, mask, mean_image):
  """The code's nonzero units, the squared error and the squared deviation from
  ``mean_image``, each summed over the valid images."""
  def body(totals, chunk):
    x, valid = chunk
    x = to_float(x)
    code = encode_fn(variables, x)
    reconstruction = decode_fn(variables, code).astype(jnp.float32)
    per_image = lambda a: jnp.sum(a.reshape(len(x), -1), axis=-1)
    l0 = per_image((code != 0).astype(jnp.float32))
    sse = per_image(jnp.square(reconstruction - x))
    sst = per_image(jnp.square(x - mean_image))
    values = (l0, sse, sst)
    return tuple(t + jnp.sum(jnp.where(valid, v, 0.0)) for t, v in zip(totals, values)), None

  zeros = tuple(jnp.zeros((), jnp.float32) for _ in range(3))
  return jax.lax.scan(body, zeros, (images, mask))[0]


# An on-disk train set (``aejax.data.rows``) is read about this many bytes at a time.
PIECE_BYTES = 32 << 20


def _fired_over(encode_fn, variables, train_images_u8, batch_size: int) -> np.ndarray:
  """Whether each code unit fires on some training image: in one compiled pass for
  images in memory; for images on disk, a pass per piece of whole batches, about
  ``PIECE_BYTES`` (each padded to that size, so one shape compiles), never all in
  memory."""
  if isinstance(train_images_u8, np.ndarray):
    return np.asarray(jax.device_get(_fired_units(encode_fn, variables,
                                                  *chunked(train_images_u8, batch_size))))
  size = min(batch_size, len(train_images_u8))
  row_bytes = int(np.prod(train_images_u8.shape[1:])) * np.dtype(train_images_u8.dtype).itemsize
  batches = max(1, min(PIECE_BYTES // (size * row_bytes), -(-len(train_images_u8) // size)))
  piece = size * batches
  fired = None
  for start in range(0, len(train_images_u8), piece):
    images = train_images_u8[start:start + piece]
    padded = np.zeros((piece, *images.shape[1:]), images.dtype)
    padded[:len(images)] = images
    mask = (np.arange(piece) < len(images)).reshape(batches, size)
    part = np.asarray(jax.device_get(_fired_units(
        encode_fn, variables, padded.reshape(batches, size, *images.shape[1:]), mask)))
    fired = part if fired is None else fired | part
  return fired


def code_statistics(encode_fn: Callable[[Any, jax.Array], jax.Array],
                    decode_fn: Callable[[Any, jax.Array], jax.Array], variables: Any,
                    train_images_u8: np.ndarray, test_images_u8: np.ndarray,
                    batch_size: int) -> dict:
  """``{"l0", "dead_fraction", "dead_count", "code_units",
  "fraction_variance_explained"}`` (see the module docstring) of the model that
  ``encode_fn(variables, x [B, H, W, C] float) -> code [B, ...]`` and
  ``decode_fn(variables, code) -> reconstruction [B, H, W, C]`` describe.

  The functions are jitted with ``variables`` as an argument, e.g.
  ``functools.partial(model.apply, method="encode")``; called again with the same two
  function objects (a sweep's members are), the compiled passes are reused. Images
  are uint8 ``[n, H, W, C]``, processed ``batch_size`` at a time.
  """
  fired = _fired_over(encode_fn, variables, train_images_u8, batch_size)
  test_images_u8 = np.asarray(test_images_u8)
  test, test_mask = chunked(test_images_u8, batch_size)
  # The mean of the images as to_float scales them (pixels by their dtype's maximum).
  # (A float64 sum, not a float64 copy of the test set: 8x its bytes.)
  mean_image = jnp.asarray(test_images_u8.mean(axis=0, dtype=np.float64)
                           / PIXEL_MAX.get(np.dtype(test_images_u8.dtype), 1.0), jnp.float32)
  l0_sum, sse, sst = (float(v) for v in jax.device_get(
      _test_sums(encode_fn, decode_fn, variables, test, test_mask, mean_image)))
  dead = int(np.sum(~fired))
  return {
      "l0": l0_sum / len(test_images_u8),
      "dead_fraction": dead / fired.size,
      "dead_count": dead,
      "code_units": int(fired.size),
      # None for a test set without variance (one image, or all alike).
      "fraction_variance_explained": 1.0 - sse / sst if sst > 0 else None,
  }
