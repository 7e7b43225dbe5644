"""A folder of ``.npy`` shards of float vectors, read in place: ``npy:<folder>``.

An SAE's training set (a network's activations) is often tens of gigabytes in many
``.npy`` files, each ``[N_i, D]``. This source never copies them and never holds them
in memory whole: the Dataset's splits are views (``Vectors``) over the shards on disk
(``rows.Shards``), and ``input='stream'`` reads each batch's rows from there.

- **Splits.** ``train/`` and ``test/`` subfolders of shards, when there are both;
  otherwise the folder's own shards (sorted by name, end to end), of which every
  ``k``-th row (``k = round(1 / config.test_fraction)``) is held out for the test
  split: spread across the whole data, and found by arithmetic, never by an index
  array as long as the data.
- **Values.** float32 is read as it is; float16 (exactly) and float64 (rounded to the
  nearest float32) become float32 as they are read. All shards share one width ``D``
  and one dtype. Labels are all 0.
- **One pass.** The first load reads every row once, in order, for: the content
  fingerprint (``core.fingerprint_of`` of the splits as read), the check that every
  value is finite, whether all lie in [0, 1], and the train split's per-feature mean
  and standard deviation (Chan et al.'s pairwise merge of each piece's moments, in
  float64). ``config.standardize`` then applies them as rows are read.
- **Its cache.** The pass's results go to a small JSON file under
  ``prepared.root(config)`` (``npy-<hash of the folder and split>.json``), keyed by the
  shards' manifest (paths, sizes, modification times): a later launch reads it and
  makes no pass; a changed, added or removed shard makes it measure again.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time

import numpy as np
from absl import logging

from aejax.data import prepared, rows as rows_lib
from aejax.data.core import DataError, Dataset

FORMAT = 1  # the statistics file's layout; another is measured again
PIECE_ROWS = 8192  # rows a piece of the pass (as core.pieces reads a Rows)
FLOATS = (np.float16, np.float32, np.float64)
LABEL_DTYPE = np.uint8  # the labels, all 0, as fingerprint_of hashes labels that fit uint8


# ------------------------------------------------------------------------ views
class Vectors:
  """Rows of ``base`` (an array-like ``[N, D]`` with ``take``: ``rows.Shards``), as a
  read-only float32 array ``[n, D]``: row ``j`` is ``base``'s row ``base_row(j)``,
  every ``every``-th base row held out (``part='train'``) or only those
  (``part='test'``; ``every=0``: all rows, in order), less ``mean`` over ``std`` when
  they are given (float64 arithmetic, as ``readers.standardize``, then float32)."""

  def __init__(self, base, every: int = 0, part: str = "train", mean=None, std=None,
               path=None):
    self.base, self.every, self.part = base, every, part
    self.mean, self.std = mean, std
    self.path = path if path is not None else getattr(base, "path", None)
    n, k = len(base), every
    rows = n if not k else (n // k if part == "test" else n - n // k)
    self.shape = (rows, *base.shape[1:])
    self.dtype = np.dtype(np.float32)

  def standardized(self, mean: np.ndarray, std: np.ndarray) -> "Vectors":
    return Vectors(self.base, self.every, self.part, mean, std, self.path)

  ndim = property(lambda self: len(self.shape))
  nbytes = property(lambda self: len(self) * int(np.prod(self.shape[1:])) * 4)

  def __len__(self) -> int:
    return self.shape[0]

  def __repr__(self) -> str:
    return (f"Vectors({self.base!r}, every={self.every}, part={self.part!r}, "
            f"standardized={self.mean is not None})")

  def base_row(self, rows: np.ndarray) -> np.ndarray:
    """The base's row of each of these rows (int64, non-negative, in range)."""
    rows, k = np.asarray(rows, np.int64), self.every
    if not k:
      return rows
    if self.part == "test":  # the k-th, 2k-th, ... base rows
      return rows * k + (k - 1)
    return rows // (k - 1) * k + rows % (k - 1)  # the k - 1 rows before each of those

  def take(self, indices) -> np.ndarray:
    """Rows ``indices`` (any order, repeats and negatives allowed), as ``array[indices]``."""
    indices = np.asarray(indices, np.int64)
    flat = np.where(indices < 0, indices + len(self), indices).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
      raise IndexError(f"rows {indices.min()}..{indices.max()} of {len(self)}")
    out = self._convert(self._read(self.base_row(flat)))
    return out.reshape(*indices.shape, *self.shape[1:])

  def _read(self, base_rows: np.ndarray) -> np.ndarray:
    """The base's rows ``base_rows``; a dense run (a piece of the train split) in one
    read of the base rows it spans, the held-out rows in it dropped after."""
    if not base_rows.size:
      return np.empty((0, *self.shape[1:]), self.base.dtype)
    low, high = int(base_rows.min()), int(base_rows.max()) + 1
    if high - low <= 2 * len(base_rows):
      return self.base[low:high][base_rows - low]
    return self.base.take(base_rows)

  def _convert(self, rows: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, refused
      if self.mean is None:
        return rows.astype(np.float32, copy=False)
      return ((rows - self.mean) / self.std).astype(np.float32)

  def __getitem__(self, key):
    if isinstance(key, (int, np.integer)):
      return self.take(np.asarray([key]))[0]
    if isinstance(key, slice):
      key = np.arange(*key.indices(len(self)))
    key = np.asarray(key)
    return self.take(np.flatnonzero(key) if key.dtype == bool else key)

  def __array__(self, dtype=None, copy=None):
    del copy  # always a new array
    whole = self.take(np.arange(len(self)))
    return whole if dtype is None else whole.astype(dtype)

  def blocks(self, rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive pieces of at most ``rows`` rows covering all."""
    rows = max(1, rows)
    return [(s, min(s + rows, len(self))) for s in range(0, len(self), rows)]


# ----------------------------------------------------------------------- shards
def shard_files(folder: pathlib.Path) -> dict[str, list[pathlib.Path]]:
  """``{'train': [...], 'test': [...]}`` of ``train/`` and ``test/`` subfolders when
  both exist, else ``{'all': [...]}``: each folder's ``.npy`` files, sorted by name."""
  listed = lambda f: sorted(p for p in f.iterdir() if p.suffix == ".npy" and p.is_file())
  if (folder / "train").is_dir() and (folder / "test").is_dir():
    layout = {split: listed(folder / split) for split in ("train", "test")}
  else:
    layout = {"all": listed(folder)}
  for split, files in layout.items():
    if not files:
      where = folder if split == "all" else folder / split
      raise DataError(f"{where} holds no .npy shards: give a folder of float [N, D] .npy "
                      "files (or train/ and test/ subfolders of them).")
  return layout


def open_shards(files: list[pathlib.Path]) -> rows_lib.Shards:
  """``files`` end to end, each checked: a 2-D float array of the first one's width and
  dtype, whole (a truncated file is ``DamagedError``)."""
  parts, first = [], None
  for path in files:
    part = rows_lib.Rows(path)
    if part.ndim != 2 or part.dtype.type not in FLOATS:
      raise DataError(f"{path} is {part.dtype} {list(part.shape)}; a shard must be float "
                      "[N, D] (float32; float16 and float64 are read as float32).")
    if first is None:
      first = part
    elif part.shape[1] != first.shape[1]:
      raise DataError(f"{path} holds vectors of width {part.shape[1]} but {first.path} of "
                      f"width {first.shape[1]}: every shard needs one width D.")
    elif part.dtype != first.dtype:
      raise DataError(f"{path} is {part.dtype} but {first.path} {first.dtype}: save every "
                      "shard in one dtype.")
    parts.append(part)
  return rows_lib.Shards(parts)


def splits(folder: pathlib.Path, test_fraction: float) -> tuple[dict[str, Vectors], str]:
  """``({'train': view, 'test': view}, how they were split)``, unstandardised."""
  layout = shard_files(folder)
  if "all" not in layout:
    views = {s: Vectors(open_shards(f), path=folder / s) for s, f in layout.items()}
    train, test = (views[s].base.parts[0] for s in ("train", "test"))
    if train.shape[1] != test.shape[1]:
      raise DataError(f"{test.path} holds vectors of width {test.shape[1]} but {train.path} "
                      f"of width {train.shape[1]}: every shard needs one width D.")
    return views, "train/ and test/ subfolders"
  base = open_shards(layout["all"])
  every = max(2, round(1 / test_fraction))
  if len(base) < every:
    raise DataError(f"{folder} holds {len(base)} rows; holding out every {every}th row "
                    f"(test_fraction={test_fraction}) needs at least {every}.")
  views = {s: Vectors(base, every, s, path=folder) for s in ("train", "test")}
  return views, f"every {every}th row held out (test_fraction={test_fraction})"


# -------------------------------------------------------------------- the pass
def measure(views: dict[str, Vectors], pieces: int = PIECE_ROWS) -> dict:
  """One pass over ``views``' rows, in order (see the module docstring): their
  fingerprint, the train split's mean and standard deviation (float64 ``[D]``; a
  constant feature's taken as 1), its float32 mean as ``core.mean_of`` gives it,
  whether all values lie in [0, 1], and the counts; DataError naming the shard and
  row of a non-finite value."""
  digest = hashlib.sha256()
  d = views["train"].shape[1]
  count, mean, m2, total = 0, np.zeros(d), np.zeros(d), np.zeros(d)
  bounded = True
  for split in ("train", "test"):
    view = views[split]
    digest.update(repr((tuple(view.shape), view.dtype.str)).encode())
    for start, stop in view.blocks(pieces):
      piece = view[start:stop]
      _check_finite(view, start, piece)
      digest.update(np.ascontiguousarray(piece).data)
      bounded = bounded and bool(piece.min() >= 0 and piece.max() <= 1)
      if split == "train":
        count, mean, m2 = _merge(count, mean, m2, piece)
        total += piece.sum(0, dtype=np.float64)
    # Its labels, all 0, as fingerprint_of hashes a uint8 array of them.
    digest.update(repr(((len(view),), np.dtype(LABEL_DTYPE).str)).encode())
    for start, stop in view.blocks(1 << 20):
      digest.update(bytes(stop - start))
  std = np.sqrt(m2 / count)
  return {"fingerprint": digest.hexdigest(), "mean": mean.tolist(),
          "std": np.where(std > 0, std, 1.0).tolist(),
          "pixel_mean": (total / count).astype(np.float32).tolist(), "bounded": bounded,
          "n_train": len(views["train"]), "n_test": len(views["test"])}


def _merge(count: int, mean: np.ndarray, m2: np.ndarray, piece: np.ndarray):
  """``(count, mean, m2)`` of the rows so far and ``piece``'s rows: Chan, Golub and
  LeVeque's pairwise update of the sums of squared deviations, in float64, sound
  where a running sum of squares would cancel."""
  n = len(piece)
  piece_mean = piece.mean(0, dtype=np.float64)
  piece_m2 = np.square(piece - piece_mean).sum(0)
  both = count + n
  delta = piece_mean - mean
  return (both, mean + delta * (n / both),
          m2 + piece_m2 + np.square(delta) * (count * n / both))


def _check_finite(view: Vectors, start: int, piece: np.ndarray) -> None:
  bad = ~np.isfinite(piece).all(1)
  if bad.any():
    row = int(np.argmax(bad))
    base_row = int(view.base_row([start + row])[0])
    path, at = view.base.locate(base_row)
    value = view.base.take(np.asarray([base_row]))[0][~np.isfinite(piece[row])][0]
    raise DataError(f"{path}: row {at} holds a non-finite value ({value}; NaN, inf or "
                    "beyond float32's range): fix or remove that shard.")


# ------------------------------------------------------------------- the cache
def _cached(path: pathlib.Path, digest: str) -> dict | None:
  try:
    meta = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  ok = meta.get("format") == FORMAT and meta.get("manifest_digest") == digest
  return meta if ok else None


def statistics(folder: pathlib.Path, views: dict[str, Vectors], identity: dict,
               files: list[pathlib.Path], root_dir: pathlib.Path) -> dict:
  """``measure(views)``, from its file under ``root_dir`` when the shards' manifest is
  the one it was measured on, else measured (one process at a time) and kept."""
  key = hashlib.sha256(json.dumps({**identity, "format": FORMAT},
                                  sort_keys=True).encode()).hexdigest()[:20]
  path = root_dir / f"npy-{key}.json"
  digest = prepared._digest(prepared.manifest(files, folder))
  meta = _cached(path, digest)
  if meta is None:
    with prepared._locked(root_dir, f"npy-{key}", f"npy:{folder}"):
      meta = _cached(path, digest)  # another process may have measured it
      if meta is None:
        why = "none yet" if not path.exists() else "its shards changed since"
        logging.info("Measuring npy:%s in one pass (%s): %d + %d rows.", folder, why,
                     len(views["train"]), len(views["test"]))
        start = time.monotonic()
        meta = {"format": FORMAT, "manifest_digest": digest, **measure(views)}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
          tmp.write_text(json.dumps(meta))
          os.replace(tmp, path)  # whole or not at all
        except OSError as e:
          tmp.unlink(missing_ok=True)
          raise DataError(f"The statistics of npy:{folder} cannot be kept in {path} "
                          f"({e.strerror or e}); name another folder with "
                          "--config.prepared_dir=<folder>.") from None
        logging.info("Measured npy:%s in %.1f s; kept in %s (later loads read it).",
                     folder, time.monotonic() - start, path)
        return meta
  logging.info("Read the statistics of npy:%s from %s: no pass over its shards.",
               folder, path)
  return meta


# ---------------------------------------------------------------------- source
def read_npy(folder: str | os.PathLike, config) -> Dataset:
  """The Dataset of a folder of shards (see the module docstring), named
  ``config.dataset``; its splits stay on disk."""
  folder = pathlib.Path(folder).expanduser()
  if not folder.is_dir():
    raise DataError(f"npy folder {folder} does not exist.")
  views, split = splits(folder, config.test_fraction)
  files = sorted({p.path for v in views.values() for p in v.base.parts})
  identity = {"kind": "npy", "location": str(folder.resolve()),
              "split": split if views["train"].every else "folders"}
  stats = statistics(folder, views, identity, files, prepared.root(config))
  details = {"kind": "vectors", "standardize": config.standardize, "split": split,
             "shards": len(files), "stored_dtype": str(views["train"].base.dtype),
             "labels": "none (all 0)"}
  fingerprint, pixel_mean = stats["fingerprint"], np.asarray(stats["pixel_mean"], np.float32)
  if config.standardize:
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    views = {s: v.standardized(mean, std) for s, v in views.items()}
    details.update(mean=stats["mean"], std=stats["std"], bounded=False)
    # The standardised rows are a function of the rows and these statistics.
    fingerprint = hashlib.sha256((fingerprint + json.dumps([stats["mean"], stats["std"]])
                                  ).encode()).hexdigest()
    pixel_mean = np.zeros_like(pixel_mean)  # their mean, by construction
  else:
    details["bounded"] = stats["bounded"]
  dataset = Dataset(name=config.dataset, source="npy", location=str(folder),
                    train_images=views["train"],
                    train_labels=np.zeros(len(views["train"]), LABEL_DTYPE),
                    test_images=views["test"],
                    test_labels=np.zeros(len(views["test"]), LABEL_DTYPE), details=details)
  # Known from the pass: reading the shards again to compute them is what it spares.
  dataset.__dict__.update(fingerprint=fingerprint, pixel_mean=pixel_mean)
  return dataset
