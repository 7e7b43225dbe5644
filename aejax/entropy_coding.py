"""Integer latents to bytes and back: a range coder (``constriction``) over integer
frequency tables, one byte string per image.

The tables are made once from a model's per-channel cumulative density
(``make_tables``), quantized to integer frequencies that sum to ``2**PRECISION``,
and saved beside the model (``save``/``load``): encoder and decoder build their
coding models from those integers alone, so they agree exactly on any machine
whatever the floats of the density did there.

Per channel the table covers the integers ``offset .. offset + n - 1`` where the
density holds all but ``TAIL`` of its mass, plus one escape symbol; a latent outside
that range is coded as the escape, then its value in a uniform 16-bit symbol, so
data the model was not trained on still round-trips exactly (at 16 + log2 of the
escape's frequency extra bits). The symbols of an image are coded channel by
channel in raster order, then the escaped values.

Bytes: the coder's 32-bit words written big-endian, trailing zero bytes dropped
(the decoder puts them back), so a string is not rounded up to 4 bytes. There is no
header: the latent shape is the model's.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable

import numpy as np

PRECISION = 16  # the frequencies of a channel sum to 2**PRECISION
TAIL = 1e-6  # density mass left to the escape symbol, per channel and side
SEARCH = 256  # the tables look for the support within [-SEARCH, SEARCH]
ESCAPE_BITS = 16  # an escaped value is coded in this many raw bits


@dataclasses.dataclass(frozen=True)
class Tables:
  """``offsets`` int32 [C]: each channel's smallest coded value; ``frequencies``
  int32 [C, n_max]: symbol ``s`` of channel c (value ``offsets[c] + s``) has
  frequency ``frequencies[c, s]`` for ``s < sizes[c]``, the escape symbol is
  ``sizes[c]``, and zeros pad the row; ``sizes`` int32 [C]."""
  offsets: np.ndarray
  sizes: np.ndarray
  frequencies: np.ndarray

  @property
  def channels(self) -> int:
    return len(self.offsets)

  def row(self, c: int) -> np.ndarray:
    """Channel c's frequencies, its escape last: [sizes[c] + 1]."""
    return self.frequencies[c, :self.sizes[c] + 1]


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def bin_masses(logits_lower: np.ndarray, logits_upper: np.ndarray) -> np.ndarray:
  """``c(upper) - c(lower)`` from the cdf's logits, on the side of the median where
  the sigmoid keeps its precision."""
  sign = -np.sign(logits_lower + logits_upper)
  sign[sign == 0] = 1.0
  return np.abs(_sigmoid(sign * logits_upper) - _sigmoid(sign * logits_lower))


def quantize_frequencies(masses: np.ndarray, total: int = 2 ** PRECISION) -> np.ndarray:
  """Nonnegative masses [n] -> int32 frequencies [n], each ≥ 1, summing to ``total``:
  1 + the floor of each mass's share of the rest, the remainder to the largest
  fractional parts (ties to the lower index)."""
  n = len(masses)
  if n > total:
    raise ValueError(f"{n} symbols do not fit in frequencies summing to {total}.")
  share = masses / masses.sum() * (total - n)
  frequencies = 1 + np.floor(share).astype(np.int64)
  remainder = total - int(frequencies.sum())
  order = np.argsort(-(share - np.floor(share)), kind="stable")
  frequencies[order[:remainder]] += 1
  return frequencies.astype(np.int32)


def make_tables(cdf_logits: Callable[[np.ndarray], np.ndarray], channels: int) -> Tables:
  """Tables from ``cdf_logits(values [C, N]) -> logit(c_channel(values)) [C, N]``."""
  grid = np.arange(-SEARCH, SEARCH + 1, dtype=np.float64)  # integer latent values
  edges = np.concatenate([grid - 0.5, [SEARCH + 0.5]])
  logits = np.asarray(cdf_logits(np.tile(edges, (channels, 1))), np.float64)
  cdf = _sigmoid(logits)
  offsets, rows = [], []
  for c in range(channels):
    inside = np.flatnonzero((cdf[c, 1:] > TAIL) & (cdf[c, :-1] < 1 - TAIL))
    if len(inside) == 0:  # a channel the density puts almost all on one value
      inside = np.array([int(np.argmax(bin_masses(logits[c, :-1], logits[c, 1:])))])
    low, high = inside[0], inside[-1]
    masses = bin_masses(logits[c, low:high + 1], logits[c, low + 1:high + 2])
    escape = max(1.0 - masses.sum(), 0.0)
    rows.append(quantize_frequencies(np.append(masses, escape)))
    offsets.append(int(grid[low]))
  width = max(len(r) for r in rows)
  frequencies = np.zeros((channels, width), np.int32)
  for c, r in enumerate(rows):
    frequencies[c, :len(r)] = r
  return Tables(np.asarray(offsets, np.int32), np.asarray([len(r) - 1 for r in rows],
                                                          np.int32), frequencies)


def save(tables: Tables, path: str | pathlib.Path) -> None:
  np.savez(path, offsets=tables.offsets, sizes=tables.sizes, frequencies=tables.frequencies)


def load(path: str | pathlib.Path) -> Tables:
  with np.load(path) as f:
    return Tables(f["offsets"], f["sizes"], f["frequencies"])


# ------------------------------------------------------------------- coding


@functools.lru_cache(maxsize=8)
def _models(key: tuple) -> tuple:
  """constriction's models for a table (cached by its bytes)."""
  import constriction  # noqa: PLC0415 (only coding needs it)
  offsets, sizes, frequencies = key
  tables = Tables(np.frombuffer(offsets, np.int32), np.frombuffer(sizes, np.int32),
                  np.frombuffer(frequencies, np.int32).reshape(len(np.frombuffer(
                      offsets, np.int32)), -1))
  categorical = [constriction.stream.model.Categorical(
      tables.row(c).astype(np.float64) / 2 ** PRECISION, perfect=False)
                 for c in range(tables.channels)]
  return categorical, constriction.stream.model.Uniform(2 ** ESCAPE_BITS)


def _key(tables: Tables) -> tuple:
  return (tables.offsets.astype(np.int32).tobytes(), tables.sizes.astype(np.int32).tobytes(),
          tables.frequencies.astype(np.int32).tobytes())


def _symbols(latents: np.ndarray, tables: Tables) -> tuple[np.ndarray, np.ndarray]:
  """Integer latents [h, w, C] -> (symbols int32 [C, h·w], escaped values)."""
  values = np.rint(np.moveaxis(np.asarray(latents), -1, 0).reshape(tables.channels, -1))
  symbols = values.astype(np.int64) - tables.offsets[:, None]
  outside = (symbols < 0) | (symbols >= tables.sizes[:, None])
  escaped = values[outside].astype(np.int64)  # channel by channel, raster order
  if np.any(np.abs(escaped) >= 2 ** (ESCAPE_BITS - 1)):
    raise ValueError(f"a latent of magnitude ≥ {2 ** (ESCAPE_BITS - 1)} cannot be coded.")
  symbols = np.where(outside, tables.sizes[:, None], symbols)
  return symbols.astype(np.int32), (escaped + 2 ** (ESCAPE_BITS - 1)).astype(np.int32)


def encode(latents: np.ndarray, tables: Tables) -> bytes:
  """Integer-valued latents [h, w, C] of one image -> its byte string."""
  import constriction  # noqa: PLC0415
  categorical, uniform = _models(_key(tables))
  symbols, escaped = _symbols(latents, tables)
  encoder = constriction.stream.queue.RangeEncoder()
  for c in range(tables.channels):
    encoder.encode(symbols[c], categorical[c])
  if len(escaped):
    encoder.encode(escaped, uniform)
  return encoder.get_compressed().astype(">u4").tobytes().rstrip(b"\0")


def decode(data: bytes, tables: Tables, shape: tuple[int, ...]) -> np.ndarray:
  """A byte string -> the latents [h, w, C] (float32, integer-valued) it holds."""
  import constriction  # noqa: PLC0415
  categorical, uniform = _models(_key(tables))
  h, w, c = shape
  padded = data + b"\0" * (-len(data) % 4)
  words = np.frombuffer(padded, ">u4").astype(np.uint32)
  decoder = constriction.stream.queue.RangeDecoder(words)
  symbols = np.stack([decoder.decode(categorical[i], h * w) for i in range(c)]).astype(np.int64)
  outside = symbols == tables.sizes[:, None]
  values = symbols + tables.offsets[:, None]
  if outside.any():
    values[outside] = decoder.decode(uniform, int(outside.sum())).astype(np.int64) - 2 ** (
        ESCAPE_BITS - 1)
  return np.moveaxis(values.reshape(c, h, w), 0, -1).astype(np.float32)


def encode_batch(latents: np.ndarray, tables: Tables) -> list[bytes]:
  """[N, h, w, C] -> N byte strings."""
  return [encode(x, tables) for x in latents]


def table_bits(latents: np.ndarray, tables: Tables) -> np.ndarray:
  """The ideal code length of each image's latents [N, h, w, C] under the integer
  tables, escapes included: [N] bits. What an exact entropy coder would write."""
  out = np.empty(len(latents))
  for i, x in enumerate(latents):
    symbols, escaped = _symbols(x, tables)
    rows = np.take_along_axis(tables.frequencies, symbols, axis=1)
    out[i] = np.sum(PRECISION - np.log2(rows)) + ESCAPE_BITS * len(escaped)
  return out
