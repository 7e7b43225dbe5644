"""Prepared copies: a source's data decoded once, then read from disk by every launch.

The first load of an image folder, an npz file or CIFAR's records writes its
*prepared copy*: each split's images as one ``.npy`` file, its labels, a CRC-32 per
block of rows (``rows.Rows`` checks them as it reads), the train split's pixel mean,
and ``meta.json``, written last, holding the counts, shapes, classes, the content
fingerprint (the same sha256 as ``core.Dataset.fingerprint``) and how the copy was
made. Every later load, resume, evaluation, report section and sweep member opens the
copy in milliseconds and decodes nothing; its splits stay on disk (``rows.Rows``)
until a consumer reads them, so ``input='stream'`` trains on data larger than memory.

A copy lives in ``config.prepared_dir``, by default ``<TFDS data dir>/aejax_prepared``
(``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``), in a folder named by a hash of
the source's identity: its kind, its resolved location and the config keys its
reader takes (``Source.keys``). The copy records a manifest of its source (each
file's path, size and modification time); a load whose manifest differs says what
changed in one line and prepares the copy again. Removing a copy is ``rm -r`` of its
folder (the log line that made it names it); the next load prepares it again.

Two processes preparing one copy take turns on a lock file beside it: the second
waits, then reuses what the first wrote. A copy is written under a temporary name and
renamed whole, so no process reads a half-written one; an interrupted or failed
preparation (a signal, a full disk, a file that changed while it was read) removes
its temporary folder. A copy whose files are truncated, or whose rows fail their
checksum when read, is set aside and prepared again by the next load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import time
import zlib
from typing import Callable

import numpy as np
from absl import logging

from aejax.data import rows as rows_lib
from aejax.data.core import DataError, Dataset, fingerprint_of, pieces, scaled_mean

FORMAT = 1  # the copy's layout; a copy of another format is prepared again
ROOT_NAME = "aejax_prepared"
META = "meta.json"
MANIFEST = "manifest.json.gz"
SPLITS = ("train", "test")
HEADER_BYTES = 128  # room for any [N, H, W, C] header, so skipped rows can shrink N


def default_root() -> pathlib.Path:
  """``<TFDS data dir>/aejax_prepared``, without importing tensorflow-datasets."""
  data_dir = os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return pathlib.Path(data_dir).expanduser() / ROOT_NAME


def root(config) -> pathlib.Path:
  """Where ``config``'s copies live: ``config.prepared_dir``, else ``default_root()``."""
  named = getattr(config, "prepared_dir", "")
  return pathlib.Path(named).expanduser() if named else default_root()


# ------------------------------------------------------------------- manifests
def manifest(files: list[pathlib.Path], base: pathlib.Path) -> list[list]:
  """``[relative path, size, modification time (ns)]`` of each file, in order: what
  the copy was made from. A file that cannot be listed is kept with size -1, so that
  reading it is the error naming it."""
  entries = []
  for path in files:
    try:
      stat = path.stat()
      entries.append([path.relative_to(base).as_posix(), stat.st_size, stat.st_mtime_ns])
    except OSError:
      entries.append([path.relative_to(base).as_posix(), -1, -1])
  return entries


def _digest(entries: list[list]) -> str:
  return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _changes(before: list[list], now: list[list]) -> str:
  """``'3 files changed, 1 added, 0 removed'`` between two manifests."""
  old = {e[0]: e[1:] for e in before}
  new = {e[0]: e[1:] for e in now}
  changed = sum(1 for k in new.keys() & old.keys() if new[k] != old[k])
  return (f"{changed} file{'s' * (changed != 1)} changed, {len(new.keys() - old.keys())} "
          f"added, {len(old.keys() - new.keys())} removed since it was prepared")


# --------------------------------------------------------------------- writing
class Writer:
  """Writes one copy into ``folder`` (a temporary folder ``load`` renames)."""

  def __init__(self, folder: pathlib.Path):
    self.folder = folder
    self.labels: dict[str, np.ndarray] = {}
    self.skipped: list[str] = []  # files left out (config.skip_unreadable)

  def path(self, split: str) -> pathlib.Path:
    return self.folder / f"{split}_images.npy"

  def allocate(self, split: str, n: int, row_shape: tuple, dtype) -> int:
    """Creates ``split``'s images file for ``n`` rows, its space reserved now (a full
    disk fails here, before any decoding); returns the offset of row 0."""
    dtype = np.dtype(dtype)
    header = rows_lib.npy_header((n, *row_shape), dtype, HEADER_BYTES)
    size = len(header) + n * int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    with open(self.path(split), "wb") as f:
      f.write(header)
      try:
        os.posix_fallocate(f.fileno(), 0, size)
      except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
          raise
        f.truncate(size)  # a filesystem without fallocate
    return len(header)

  def write(self, split: str, images, labels: np.ndarray) -> None:
    """``images`` (an array, or ``Rows``) in full, with their labels."""
    offset = self.allocate(split, len(images), tuple(images.shape[1:]), images.dtype)
    with open(self.path(split), "r+b") as f:
      f.seek(offset)
      for piece in pieces(images):
        f.write(np.ascontiguousarray(piece).data)
    self.labels[split] = np.asarray(labels)

  def keep(self, split: str, keep: np.ndarray) -> None:
    """Leaves out the rows where ``keep`` is False: the rows after them move up and
    the file shrinks (its header, written with room to spare, is rewritten in place)."""
    path = self.path(split)
    shape, dtype, offset = rows_lib.read_npy_header(path)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    with open(path, "r+b") as f:
      to = 0
      for row in np.flatnonzero(keep):
        if row != to:
          f.seek(offset + int(row) * row_bytes)
          data = f.read(row_bytes)
          f.seek(offset + to * row_bytes)
          f.write(data)
        to += 1
      f.truncate(offset + to * row_bytes)
      f.seek(0)
      f.write(rows_lib.npy_header((to, *shape[1:]), dtype, offset))
    self.labels[split] = self.labels[split][keep]

  def finish(self, record: dict, known: dict | None = None) -> dict:
    """Fingerprint, checksums and pixel mean, in one pass over the splits read back in
    pieces, unless ``known`` gives them (``fingerprint``, ``checksums`` by split,
    ``pixel_sum``: the train split's float64 sum over rows, as the decoding workers
    measured them while writing); then ``meta.json``, the copy's last file.
    ``record``: name, source, location, details, manifest."""
    images = {s: rows_lib.Rows(self.path(s)) for s in SPLITS}
    if known is None:
      sums, total = {s: [] for s in SPLITS}, []

      def on_piece(i: int, piece: np.ndarray) -> None:  # 0: train images, 2: test images
        if i in (0, 2):
          sums[SPLITS[i // 2]].append(rows_lib.checksums(piece))
        if i == 0:
          total.append(piece.sum(0, dtype=np.float64))

      known = {"fingerprint": fingerprint_of((images["train"], self.labels["train"],
                                              images["test"], self.labels["test"]), on_piece),
               "checksums": {s: np.concatenate(c) for s, c in sums.items()},
               "pixel_sum": sum(total)}
    fingerprint = known["fingerprint"]
    for split in SPLITS:
      np.save(self.folder / f"{split}_labels.npy", self.labels[split])
    np.savez(self.folder / "checksums.npz", **known["checksums"])
    np.save(self.folder / "pixel_mean.npy", scaled_mean(known["pixel_sum"], images["train"]))
    with gzip.open(self.folder / MANIFEST, "wt") as f:
      json.dump(record.pop("manifest"), f)
    meta = {"format": FORMAT, **record, "skipped": self.skipped,
            "label_checksums": {s: zlib.crc32(np.ascontiguousarray(self.labels[s]).data)
                                for s in SPLITS},
            "fingerprint": fingerprint,
            "n_train": len(images["train"]), "n_test": len(images["test"]),
            "bytes": sum(p.stat().st_size for p in self.folder.iterdir())}
    (self.folder / META).write_text(json.dumps(meta))
    return meta


# --------------------------------------------------------------------- reading
def _set_aside(folder: pathlib.Path) -> str:
  """Marks a copy damaged, so that the next load prepares it again; says so."""
  with contextlib.suppress(OSError):
    (folder / META).rename(folder / f"{META}.damaged")
  return " It was set aside: launch again to prepare it again; no damaged row was trained on."


def open_copy(folder: pathlib.Path, name: str) -> Dataset:
  """The copy in ``folder`` as a Dataset named ``name`` whose images stay on disk (``rows.Rows``);
  DataError when it is incomplete, of another format, or damaged."""
  try:
    meta = json.loads((folder / META).read_text())
  except FileNotFoundError:
    raise DataError(f"{folder} holds no finished prepared copy") from None
  except (OSError, ValueError) as e:
    raise rows_lib.DamagedError(f"{folder / META} cannot be read ({e})") from None
  if meta.get("format") != FORMAT:
    raise DataError(f"{folder} holds a prepared copy of format {meta.get('format')}, "
                    f"this aejax writes {FORMAT}")
  try:
    sums = dict(np.load(folder / "checksums.npz"))
    images = {s: rows_lib.Rows(folder / f"{s}_images.npy", sums[s],
                               on_damage=lambda: _set_aside(folder)) for s in SPLITS}
    labels = {s: np.load(folder / f"{s}_labels.npy") for s in SPLITS}
    pixel_mean = np.load(folder / "pixel_mean.npy")
  except (OSError, ValueError, KeyError) as e:
    raise rows_lib.DamagedError(f"{folder}: {e}") from None
  for split in SPLITS:
    if zlib.crc32(np.ascontiguousarray(labels[split]).data) != meta["label_checksums"][split]:
      raise rows_lib.DamagedError(f"{folder}: the {split} labels fail their checksum")
  # The test split is read whole (and checked) now: every evaluation needs all of it,
  # and it is the small split; the train split stays on disk until a consumer reads it.
  dataset = Dataset(name=name, source=meta["source"], location=meta["location"],
                    train_images=images["train"], train_labels=labels["train"],
                    test_images=np.asarray(images["test"]), test_labels=labels["test"],
                    details=meta["details"])
  # Known from preparing: reading the splits to compute them again is what a copy
  # spares (Dataset caches both properties in its __dict__).
  dataset.__dict__.update(fingerprint=meta["fingerprint"], pixel_mean=pixel_mean)
  dataset.__dict__["prepared"] = meta
  return dataset


@dataclasses.dataclass(frozen=True)
class Request:
  """What a source asks ``load`` for.

  ``what``: the data, for log lines (``'folder:pictures'``); ``identity``: what names
  the copy (its kind, resolved location, reader options); ``manifest``: the source's
  files as they are now (``manifest``); ``prepare(writer)`` writes the copy (through
  ``writer``) and returns ``record`` fields (``source``, ``location``, ``details``,
  and ``known``: ``Writer.finish``'s, when it measured them while writing);
  ``skip_unreadable``: a copy that left files out may be used.
  """
  what: str
  identity: dict
  manifest: list[list]
  prepare: Callable[[Writer], dict]
  skip_unreadable: bool = False


def from_reader(read: Callable[[], Dataset]) -> Callable[[Writer], dict]:
  """``Request.prepare`` for a source whose reader gives the data in memory (an npz
  file, CIFAR's records): read once, then written as a copy."""

  def prepare(writer: Writer) -> dict:
    dataset = read()
    writer.write("train", dataset.train_images, dataset.train_labels)
    writer.write("test", dataset.test_images, dataset.test_labels)
    return {"source": dataset.source, "location": dataset.location,
            "details": dataset.details}

  return prepare


def load(request: Request, root_dir: pathlib.Path, name: str) -> Dataset:
  """The prepared copy of ``request``'s data under ``root_dir``, prepared first if
  there is none, or none that matches its files; the Dataset is named ``name``."""
  key = hashlib.sha256(json.dumps({**request.identity, "format": FORMAT},
                                  sort_keys=True).encode()).hexdigest()[:20]
  folder = root_dir / key
  entries = request.manifest
  dataset, why = _usable(folder, entries, request, name)
  if dataset is None:
    with _locked(root_dir, key, request.what):
      dataset, why = _usable(folder, entries, request, name)  # another process may have
      if dataset is None:
        logging.info("Preparing %s (%s): %s", request.what, why, folder)
        _prepare(request, folder, entries)
        dataset, why = _usable(folder, entries, request, name)
        if dataset is None:
          raise DataError(f"The copy of {request.what} just prepared in {folder} cannot be "
                          f"read ({why}).")
  return dataset


def _usable(folder: pathlib.Path, entries: list[list], request: Request, name: str
            ) -> tuple[Dataset | None, str]:
  """``(dataset, '')`` for a copy that matches ``entries``, else ``(None, why not)``."""
  if not (folder / META).is_file():
    return None, "none yet" if not folder.exists() else "no finished copy"
  try:
    dataset = open_copy(folder, name)
  except rows_lib.DamagedError as e:
    logging.warning("The prepared copy %s is damaged (%s): preparing it again.", folder, e)
    return None, "the copy was damaged"
  except DataError as e:
    return None, str(e)
  meta = dataset.__dict__["prepared"]
  if meta["manifest_digest"] != _digest(entries):
    try:
      with gzip.open(folder / MANIFEST, "rt") as f:
        why = _changes(json.load(f), entries)
    except (OSError, ValueError):
      why = "its files changed since it was prepared"
    return None, why
  if meta["skipped"] and not request.skip_unreadable:
    raise DataError(f"{meta['skipped'][0]} cannot be read as an image; replace or remove it "
                    f"(or pass --config.skip_unreadable=True to leave out the "
                    f"{len(meta['skipped'])} unreadable files).")
  return dataset, ""


@contextlib.contextmanager
def _locked(root_dir: pathlib.Path, key: str, what: str):
  """One preparer of a copy at a time: the others wait here, saying for whom."""
  try:
    root_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise DataError(f"The folder for prepared copies {root_dir} cannot be made "
                    f"({e.strerror}); name another with --config.prepared_dir=<folder>.") from None
  with open(root_dir / f"{key}.lock", "a+") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock.seek(0)
      logging.info("Waiting for process %s, which is preparing %s.",
                   lock.read().strip() or "?", what)
      fcntl.flock(lock, fcntl.LOCK_EX)
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    try:
      yield
    finally:
      lock.seek(0)
      lock.truncate()


def _prepare(request: Request, folder: pathlib.Path, entries: list[list]) -> None:
  """Writes the copy in a temporary folder, then renames it to ``folder``."""
  for stale in folder.parent.glob(f".{folder.name}.*"):  # a killed preparer's
    shutil.rmtree(stale, ignore_errors=True)
  tmp = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
  start = time.monotonic()
  try:
    tmp.mkdir()
    writer = Writer(tmp)
    record = request.prepare(writer)
    known = record.pop("known", None)  # what preparing measured already, if anything
    meta = writer.finish({**record, "name": request.what, "manifest": entries,
                          "manifest_digest": _digest(entries)}, known)
    if folder.exists():
      old = folder.parent / f".{folder.name}.{os.getpid()}.old"
      folder.rename(old)
      shutil.rmtree(old, ignore_errors=True)
    tmp.rename(folder)
  except OSError as e:
    shutil.rmtree(tmp, ignore_errors=True)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
      raise DataError(f"Preparing {request.what} in {folder.parent} failed: the disk is "
                      "full. Free space there, or name a disk with room with "
                      "--config.prepared_dir=<folder>.") from None
    raise DataError(f"Preparing {request.what} in {folder.parent} failed: "
                    f"{e.strerror or e}.") from None
  except BaseException:  # an error in the data, a signal: no half copy stays
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  seconds = time.monotonic() - start
  n = meta["n_train"] + meta["n_test"]
  logging.info("Prepared %s in %.1f s (%d images, %.0f images/s): %s, %.0f MB on disk; later "
               "loads read it. Remove it with: rm -r %s", request.what, seconds, n,
               n / max(seconds, 1e-9), folder, meta["bytes"] / 1e6, folder)

