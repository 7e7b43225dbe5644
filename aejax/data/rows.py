"""Arrays on disk, read a few rows at a time: what lets a data set exceed memory.

``Rows`` is one ``.npy`` file (a prepared copy's split, or a user's shard) read with
``os.pread``, never memory-mapped: the pages it reads stay in the OS's page cache,
where the kernel may drop them, instead of counting toward the process's resident
memory as a mapping's would. It behaves as a read-only array where aejax needs one
(``shape``, ``dtype``, ``len``, ``rows[indices]``, ``np.asarray(rows)``), so the code
that takes an in-memory array takes it too; the paths that must not hold a train set
in memory (``input=stream``, the code statistics) read it in blocks.

A prepared copy stores a CRC-32 of every block of rows (``block_rows`` rows, about
64 KiB). Each block is checked the first time this process reads any of its rows,
so damaged bytes are noticed before they reach a model: ``DamagedError`` names the
file and the block. ``Shards`` joins several ``Rows`` of one width end to end.
"""

from __future__ import annotations

import os
import pathlib
import threading
import zlib
from typing import Callable

import numpy as np

from aejax.data.core import DataError

BLOCK_BYTES = 1 << 16
_MAGIC = b"\x93NUMPY"


class DamagedError(DataError):
  """A file's bytes disagree with the checksum recorded when it was written."""


def block_rows(row_bytes: int) -> int:
  """Rows per checksummed block: about ``BLOCK_BYTES``, at least one row."""
  return max(1, BLOCK_BYTES // max(1, row_bytes))


def npy_header(shape: tuple[int, ...], dtype: np.dtype, length: int = 0) -> bytes:
  """A version-1.0 ``.npy`` header for a C-ordered array, padded with spaces to
  ``length`` bytes (at least NumPy's own, a multiple of 64), so that a header written
  before the row count is final can be rewritten in place."""
  text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
               "fortran_order": False, "shape": tuple(int(d) for d in shape)})
  need = -(-(len(_MAGIC) + 4 + len(text) + 1) // 64) * 64
  length = max(length, need)
  body = text.encode("latin1").ljust(length - len(_MAGIC) - 4 - 1) + b"\n"
  return _MAGIC + b"\x01\x00" + len(body).to_bytes(2, "little") + body


def read_npy_header(path: pathlib.Path) -> tuple[tuple[int, ...], np.dtype, int]:
  """``(shape, dtype, offset of the data)`` of a C-ordered ``.npy`` file, or DataError."""
  try:
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read = {(1, 0): np.lib.format.read_array_header_1_0,
              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
      if read is None:
        raise ValueError(f"npy format version {version}")
      shape, fortran, dtype = read(f)
      offset = f.tell()
  except (OSError, ValueError) as e:
    raise DataError(f"{path} cannot be read as a .npy file ({e}).") from None
  if fortran or dtype.hasobject:
    raise DataError(f"{path}: a .npy file of C-ordered numbers is needed "
                    f"({'Fortran order' if fortran else 'objects'}); save it with np.save "
                    "of np.ascontiguousarray(x).")
  return tuple(shape), dtype, offset


def _indices(key) -> np.ndarray:
  """Row indices of an index array or a boolean mask (as NumPy indexes)."""
  key = np.asarray(key)
  return np.flatnonzero(key) if key.dtype == bool else key


class Rows:
  """The rows of one ``.npy`` file on disk (see the module docstring).

  ``checksums``: uint32 ``[blocks]``, the CRC-32 of each block of ``block_rows`` rows
  (the last may be short); None: not checked (a user's own shard, read as it is).
  ``on_damage``: called before ``DamagedError`` is raised (a copy sets itself aside),
  returning what the error's message adds.
  """

  def __init__(self, path: str | os.PathLike, checksums: np.ndarray | None = None,
               on_damage: Callable[[], str] = lambda: ""):
    self.path = pathlib.Path(path)
    self.shape, self.dtype, self._offset = read_npy_header(self.path)
    if not self.shape:
      raise DataError(f"{self.path} holds a scalar; rows need an array [N, ...].")
    self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
    size = self.path.stat().st_size
    if size != self._offset + len(self) * self.row_bytes:
      raise DamagedError(f"{self.path} holds {size} bytes; its header says "
                         f"{self._offset + len(self) * self.row_bytes}: it is truncated.")
    self.block_rows = block_rows(self.row_bytes)
    self._checksums, self._on_damage = checksums, on_damage
    if checksums is not None and len(checksums) != -(-len(self) // self.block_rows):
      raise DamagedError(f"{self.path}: its checksums cover another number of rows.")
    self._checked = np.zeros(0 if checksums is None else len(checksums), bool)
    self._fd, self._lock = None, threading.Lock()

  # ---------------------------------------------------------------- array-like
  @property
  def ndim(self) -> int:
    return len(self.shape)

  @property
  def nbytes(self) -> int:
    return len(self) * self.row_bytes

  def __len__(self) -> int:
    return self.shape[0]

  def __repr__(self) -> str:
    return f"Rows({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

  def __array__(self, dtype=None, copy=None):
    del copy  # always a new array
    whole = self.read(0, len(self))
    return whole if dtype is None else whole.astype(dtype)

  def __getitem__(self, key):
    if isinstance(key, (int, np.integer)):
      index = int(key) + (len(self) if key < 0 else 0)
      if not 0 <= index < len(self):
        raise IndexError(f"row {key} of {len(self)}")
      return self.read(index, index + 1)[0]
    if isinstance(key, slice):
      start, stop, step = key.indices(len(self))
      if step == 1:
        return self.read(start, max(start, stop))
      key = np.arange(start, stop, step)
    return self.take(_indices(key))

  # ------------------------------------------------------------------- reading
  def _file(self) -> int:
    if self._fd is None:
      with self._lock:
        if self._fd is None:
          self._fd = os.open(self.path, os.O_RDONLY)
    return self._fd

  def _pread(self, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` as they lie on disk, unchecked."""
    n = stop - start
    buffer = bytearray(n * self.row_bytes)
    view, done = memoryview(buffer), 0
    while done < len(buffer):  # pread may return less than asked
      got = os.preadv(self._file(), [view[done:]], self._offset + start * self.row_bytes + done)
      if got == 0:
        raise DamagedError(f"{self.path} ends before row {stop}: it is truncated.")
      done += got
    return np.frombuffer(buffer, self.dtype).reshape(n, *self.shape[1:])

  def _check(self, first_block: int, rows: np.ndarray) -> None:
    """Checks whole blocks ``rows`` (starting at block ``first_block``) once."""
    per = self.block_rows
    raw = rows.reshape(len(rows), -1).view(np.uint8)
    for b in range(first_block, first_block + -(-len(rows) // per)):
      if self._checked[b]:
        continue
      start = (b - first_block) * per
      if zlib.crc32(raw[start:start + per]) != int(self._checksums[b]):
        raise DamagedError(f"{self.path}: rows {b * per} to {min((b + 1) * per, len(self)) - 1} "
                           f"fail their checksum: the file is damaged.{self._on_damage()}")
      self._checked[b] = True

  def read(self, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop``, a new array, checked where checksums are kept."""
    if self._checksums is None or start >= stop:
      return self._pread(start, stop)
    per = self.block_rows
    first, last = start // per, -(-stop // per)
    if self._checked[first:last].all():
      return self._pread(start, stop)
    rows = self._pread(first * per, min(last * per, len(self)))  # whole blocks, to check
    self._check(first, rows)
    return rows[start - first * per:stop - first * per].copy()

  def take(self, indices: np.ndarray) -> np.ndarray:
    """Rows ``indices`` (any order, repeats allowed), as ``array[indices]`` would give,
    read in sorted runs of consecutive rows."""
    indices = np.asarray(indices, np.int64)
    if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
      raise IndexError(f"rows {indices.min()}..{indices.max()} of {len(self)}")
    flat = np.where(indices < 0, indices + len(self), indices).reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    if self._checksums is not None:  # blocks not yet checked are read whole, once
      blocks = np.unique(unique // self.block_rows)
      for b in blocks[~self._checked[blocks]]:
        self.read(int(b) * self.block_rows, int(b) * self.block_rows + 1)
    out = np.empty((len(unique), *self.shape[1:]), self.dtype)
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    for run in np.split(np.arange(len(unique)), breaks):
      if len(run):
        out[run[0]:run[-1] + 1] = self._pread(int(unique[run[0]]), int(unique[run[-1]]) + 1)
    return out[inverse].reshape(*indices.shape, *self.shape[1:])

  def blocks(self, rows: int) -> "list[tuple[int, int]]":
    """``(start, stop)`` of consecutive pieces of about ``rows`` rows covering all."""
    rows = max(self.block_rows, rows // self.block_rows * self.block_rows)
    return [(s, min(s + rows, len(self))) for s in range(0, len(self), rows)]

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __del__(self):
    try:
      self.close()
    except (OSError, AttributeError):
      pass


def checksums(array: np.ndarray) -> np.ndarray:
  """uint32 ``[blocks]``: the CRC-32 of each block of rows, as ``Rows`` checks them."""
  per = block_rows(int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize)
  raw = np.ascontiguousarray(array).reshape(len(array), -1).view(np.uint8)
  return np.array([zlib.crc32(raw[s:s + per]) for s in range(0, len(array), per)], np.uint32)


class Shards:
  """Several ``Rows`` of one row shape and dtype, end to end, as one array."""

  def __init__(self, parts: list[Rows]):
    self.parts = parts
    self.shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
    self.dtype = parts[0].dtype
    self.starts = np.cumsum([0] + [len(p) for p in parts])

  ndim = property(lambda self: len(self.shape))
  nbytes = property(lambda self: sum(p.nbytes for p in self.parts))
  block_rows = property(lambda self: self.parts[0].block_rows)

  def __len__(self) -> int:
    return self.shape[0]

  def __repr__(self) -> str:
    return f"Shards({len(self.parts)} files, shape={self.shape}, dtype={self.dtype})"

  def __array__(self, dtype=None, copy=None):
    del copy
    whole = np.concatenate([np.asarray(p) for p in self.parts])
    return whole if dtype is None else whole.astype(dtype)

  def __getitem__(self, key):
    if isinstance(key, slice):
      key = np.arange(*key.indices(len(self)))
    elif isinstance(key, (int, np.integer)):
      return self.take(np.asarray([key]))[0]
    return self.take(_indices(key))

  def take(self, indices: np.ndarray) -> np.ndarray:
    indices = np.asarray(indices, np.int64)
    flat = np.where(indices < 0, indices + len(self), indices).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
      raise IndexError(f"rows {indices.min()}..{indices.max()} of {len(self)}")
    out = np.empty((len(flat), *self.shape[1:]), self.dtype)
    part = np.searchsorted(self.starts, flat, side="right") - 1
    for p in np.unique(part):
      where = part == p
      out[where] = self.parts[p].take(flat[where] - self.starts[p])
    return out.reshape(*indices.shape, *self.shape[1:])

  def blocks(self, rows: int) -> "list[tuple[int, int]]":
    return [(int(s), int(min(s + rows, len(self)))) for s in range(0, len(self), max(1, rows))]

  def locate(self, row: int) -> tuple[pathlib.Path, int]:
    """The file holding global row ``row`` and its row there."""
    p = int(np.searchsorted(self.starts, row, side="right") - 1)
    return self.parts[p].path, int(row - self.starts[p])

