"""Integer latents to bytes and back: a range coder (``constriction``) over integer
frequency tables, one byte string per image.

The tables are made once, from a model's per-channel cumulative density
(``make_tables``) or, for a scale hyperprior's Gaussian conditionals, from a fixed
list of scales (``gaussian_tables``), quantized to integer frequencies that sum to
``2**PRECISION``, and saved beside the model (``save``/``load``): encoder and decoder
build their coding models from those integers alone, so they agree exactly on any
machine whatever the floats of the density did there.

Each row of a table (a channel, or a scale) covers the integers ``offset .. offset +
n - 1`` where its density holds all but ``TAIL`` of its mass, plus one escape
symbol; a latent outside that range is coded as the escape, then its value in a
uniform 16-bit symbol, so data the model was not trained on still round-trips
exactly (at 16 + log2 of the escape's frequency extra bits).

A byte string is one or more parts, each an array of values and the table row of
each value (``Encoder.push``, ``Decoder.pull``): the values of row 0 in the array's
order, then row 1's, and so on, then the part's escaped values. A factorized prior's
string is one part, its latents channel by channel in raster order (``encode``); a
hyperprior's is ẑ's part, then ŷ's, whose rows the decoder learns from ẑ.

Bytes: the coder's 32-bit words written big-endian, trailing zero bytes dropped
(the decoder puts them back), so a string is not rounded up to 4 bytes. These are a
codec file's payload; its header (``codec_format``) is the codec's. The decoder reads
as many symbols as the rows it is given, whatever the bytes: bytes that no encoder
wrote decode to other values or raise ``CodecFormatError``, in time bounded by the
latents' count.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from typing import Callable

import statistics

import numpy as np

from aejax.codec_format import CodecFormatError

PRECISION = 16  # the frequencies of a channel sum to 2**PRECISION
TAIL = 1e-6  # density mass left to the escape symbol, per channel and side
SEARCH = 256  # the tables look for the support within [-SEARCH, SEARCH]
ESCAPE_BITS = 16  # an escaped value is coded in this many raw bits


@dataclasses.dataclass(frozen=True)
class Tables:
  """``offsets`` int32 [C]: each row's (channel's) smallest coded value;
  ``frequencies`` int32 [C, n_max]: symbol ``s`` of row c (value ``offsets[c] + s``)
  has frequency ``frequencies[c, s]`` for ``s < sizes[c]``, the escape symbol is
  ``sizes[c]``, and zeros pad the row; ``sizes`` int32 [C]."""
  offsets: np.ndarray
  sizes: np.ndarray
  frequencies: np.ndarray

  @property
  def channels(self) -> int:
    return len(self.offsets)

  def row(self, c: int) -> np.ndarray:
    """Row c's frequencies, its escape last: [sizes[c] + 1]."""
    return self.frequencies[c, :self.sizes[c] + 1]


@dataclasses.dataclass(frozen=True)
class ScaleTables(Tables):
  """One row per scale of a zero-mean Gaussian convolved with a unit uniform:
  ``scales`` float32 [S], ascending; row ``i`` is ``N(0, scales[i]²)``'s."""
  scales: np.ndarray

  def indexes(self, sigma: np.ndarray) -> np.ndarray:
    """The row that codes a value of scale ``sigma`` (any shape, float32): the table
    scale nearest to it in log, the first or the last beyond them. The rows' borders
    are the geometric means of neighbouring scales, computed in float64 (a product
    and a square root, both correctly rounded under IEEE 754, so the same on every
    machine) and rounded to float32; σ is compared with them, so encoder and decoder
    agree wherever they computed the same σ.

    Nearest rather than the next scale up (CompressAI's ``build_indexes``): on the
    bundled sample a trained hyperprior's ŷ cost 560.5 bits per image under the next
    scale up and 544.8 under the nearest, against the model's 544.0
    (docs/results/codec.md)."""
    scales = self.scales.astype(np.float64)
    borders = np.sqrt(scales[:-1] * scales[1:]).astype(np.float32)
    return np.searchsorted(borders, np.asarray(sigma, np.float32), side="left").astype(np.int32)


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
  return Tables(*_stack(offsets, rows))


def _stack(offsets: list[int], rows: list[np.ndarray]) -> tuple[np.ndarray, ...]:
  """Rows of frequencies, each its escape last -> (offsets, sizes, frequencies)."""
  frequencies = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
  for c, r in enumerate(rows):
    frequencies[c, :len(r)] = r
  return (np.asarray(offsets, np.int32), np.asarray([len(r) - 1 for r in rows], np.int32),
          frequencies)


def log_scales(low: float = 0.11, high: float = 256.0, n: int = 64) -> np.ndarray:
  """``n`` scales evenly spaced in log from ``low`` to ``high``, float32 (CompressAI's
  table for its Gaussian conditionals)."""
  return np.exp(np.linspace(math.log(low), math.log(high), n)).astype(np.float32)


def gaussian_bin_masses(values: np.ndarray, scale: float) -> np.ndarray:
  """``Φ((v + ½)/σ) - Φ((v - ½)/σ)`` for integers ``v``, float64. By the symmetry of
  the zero-mean Gaussian the difference is taken in the lower tail (``-|v|``), where
  ``Φ(x) = erfc(-x/√2)/2`` keeps its precision."""
  phi = np.vectorize(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)))
  v = -np.abs(np.asarray(values, np.float64))
  return phi((v + 0.5) / scale) - phi((v - 0.5) / scale)


def gaussian_tables(scales: np.ndarray) -> ScaleTables:
  """The tables of ``N(0, σ²)`` convolved with a unit uniform, one row per scale σ of
  ``scales`` [S], each over the integers ``-K .. K`` where all but ``TAIL`` of the mass
  lies on either side (K the smallest integer with ``Φ(-(K + ½)/σ) ≤ TAIL``)."""
  scales = np.asarray(scales, np.float32)
  tail_sigmas = statistics.NormalDist().inv_cdf(1 - TAIL)  # ≈ 4.75
  offsets, rows = [], []
  for scale in scales.astype(np.float64):
    k = max(0, math.ceil(tail_sigmas * scale - 0.5))
    masses = gaussian_bin_masses(np.arange(-k, k + 1), scale)
    rows.append(quantize_frequencies(np.append(masses, max(1.0 - masses.sum(), 0.0))))
    offsets.append(-k)
  return ScaleTables(*_stack(offsets, rows), scales=scales)


def save(tables: Tables, path: str | pathlib.Path) -> None:
  """Compressed: a Gaussian table's rows are mostly zero padding (625 KB -> 15 KB)."""
  np.savez_compressed(path, **{f.name: getattr(tables, f.name)
                               for f in dataclasses.fields(tables)})


def load(path: str | pathlib.Path, kind: type[Tables] = Tables) -> Tables:
  """The tables ``save`` wrote; ``kind=ScaleTables`` for a Gaussian's."""
  with np.load(path) as f:
    return kind(**{field.name: f[field.name] for field in dataclasses.fields(kind)})


# ------------------------------------------------------------------- coding


@functools.lru_cache(maxsize=8)
def _models(key: tuple) -> tuple:
  """constriction's models for a table (cached by its bytes): one per row, and the
  escapes' uniform one."""
  import constriction  # noqa: PLC0415 (only coding needs it)
  offsets, sizes, frequencies = key
  sizes = np.frombuffer(sizes, np.int32)
  frequencies = np.frombuffer(frequencies, np.int32).reshape(len(sizes), -1)
  categorical = [constriction.stream.model.Categorical(
      frequencies[c, :sizes[c] + 1].astype(np.float64) / 2 ** PRECISION, perfect=False)
                 for c in range(len(sizes))]
  return categorical, constriction.stream.model.Uniform(2 ** ESCAPE_BITS)


def _key(tables: Tables) -> tuple:
  return (tables.offsets.astype(np.int32).tobytes(), tables.sizes.astype(np.int32).tobytes(),
          tables.frequencies.astype(np.int32).tobytes())


def _symbols(values: np.ndarray, rows: np.ndarray, tables: Tables
             ) -> tuple[np.ndarray, np.ndarray]:
  """Integer values and their rows (flat, the same length) -> (symbols int32, the
  escaped values as uniform symbols, in the values' order)."""
  values = np.rint(values).astype(np.int64)
  symbols = values - tables.offsets[rows]
  outside = (symbols < 0) | (symbols >= tables.sizes[rows])
  escaped = values[outside]
  if np.any(np.abs(escaped) >= 2 ** (ESCAPE_BITS - 1)):
    raise ValueError(f"a latent of magnitude ≥ {2 ** (ESCAPE_BITS - 1)} cannot be coded.")
  symbols = np.where(outside, tables.sizes[rows], symbols)
  return symbols.astype(np.int32), (escaped + 2 ** (ESCAPE_BITS - 1)).astype(np.int32)


def _groups(rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
  """The positions of flat ``rows`` sorted by row, stably, and each row's count."""
  return np.argsort(rows, kind="stable"), np.bincount(rows, minlength=n_rows)


class Encoder:
  """One byte string, built part by part (see the module docstring)."""

  def __init__(self):
    import constriction  # noqa: PLC0415
    self._coder = constriction.stream.queue.RangeEncoder()

  def push(self, values: np.ndarray, rows: np.ndarray, tables: Tables) -> None:
    """Codes integer ``values`` (any shape), value i with row ``rows[i]`` of ``tables``."""
    categorical, uniform = _models(_key(tables))
    rows = np.asarray(rows, np.int64).reshape(-1)
    symbols, escaped = _symbols(np.asarray(values).reshape(-1), rows, tables)
    order, counts = _groups(rows, tables.channels)
    for r, group in enumerate(np.split(symbols[order], np.cumsum(counts)[:-1])):
      if len(group):
        self._coder.encode(group, categorical[r])
    if len(escaped):
      self._coder.encode(escaped, uniform)

  def bytes(self) -> bytes:
    return self._coder.get_compressed().astype(">u4").tobytes().rstrip(b"\0")


class Decoder:
  """Reads back, part by part, what an ``Encoder`` wrote."""

  def __init__(self, data: bytes):
    import constriction  # noqa: PLC0415
    words = np.frombuffer(data + b"\0" * (-len(data) % 4), ">u4").astype(np.uint32)
    self._coder = constriction.stream.queue.RangeDecoder(words)

  def pull(self, rows: np.ndarray, tables: Tables) -> np.ndarray:
    """The values of the next part, whose rows are ``rows``: int64, ``rows``' shape."""
    categorical, uniform = _models(_key(tables))
    shape, rows = np.shape(rows), np.asarray(rows, np.int64).reshape(-1)
    order, counts = _groups(rows, tables.channels)
    symbols = np.empty(len(rows), np.int64)
    symbols[order] = np.concatenate(
        [self._decode(categorical[r], int(n)) if n else np.zeros(0, np.int32)
         for r, n in enumerate(counts)])
    outside = symbols == tables.sizes[rows]
    values = symbols + tables.offsets[rows]
    if outside.any():
      values[outside] = self._decode(uniform, int(outside.sum())).astype(np.int64) - 2 ** (
          ESCAPE_BITS - 1)
    return values.reshape(shape)

  def _decode(self, model, n: int) -> np.ndarray:
    # constriction raises AssertionError on words no encoder could have written.
    try:
      return self._coder.decode(model, n)
    except (AssertionError, ValueError, RuntimeError):
      raise CodecFormatError("its payload holds words no range encoder "
                             "writes") from None


def channel_rows(shape: tuple[int, ...]) -> np.ndarray:
  """The row of each latent of ``shape`` [h, w, C] under a factorized prior's tables,
  channel-major: [C, h, w], row c everywhere in channel c. ``encode`` codes the
  latents moved to that layout."""
  h, w, c = shape
  return np.broadcast_to(np.arange(c)[:, None, None], (c, h, w))


def encode(latents: np.ndarray, tables: Tables) -> bytes:
  """Integer-valued latents [h, w, C] of one image -> its byte string."""
  encoder = Encoder()
  encoder.push(np.moveaxis(np.asarray(latents), -1, 0), channel_rows(latents.shape), tables)
  return encoder.bytes()


def decode(data: bytes, tables: Tables, shape: tuple[int, ...]) -> np.ndarray:
  """A byte string -> the latents [h, w, C] (float32, integer-valued) it holds."""
  values = Decoder(data).pull(channel_rows(shape), tables)
  return np.moveaxis(values, 0, -1).astype(np.float32)


def encode_batch(latents: np.ndarray, tables: Tables) -> list[bytes]:
  """[N, h, w, C] -> N byte strings."""
  return [encode(x, tables) for x in latents]


def part_bits(values: np.ndarray, rows: np.ndarray, tables: Tables) -> float:
  """The ideal code length of one part (``Encoder.push``'s arguments) under the
  integer tables, escapes included, in bits: what an exact entropy coder would write."""
  rows = np.asarray(rows, np.int64).reshape(-1)
  symbols, escaped = _symbols(np.asarray(values).reshape(-1), rows, tables)
  return float(np.sum(PRECISION - np.log2(tables.frequencies[rows, symbols]))
               + ESCAPE_BITS * len(escaped))


def table_bits(latents: np.ndarray, tables: Tables) -> np.ndarray:
  """The ideal code length of each image's latents [N, h, w, C] under a factorized
  prior's tables, escapes included: [N] bits."""
  rows = channel_rows(latents.shape[1:])
  return np.array([part_bits(np.moveaxis(x, -1, 0), rows, tables) for x in latents])
