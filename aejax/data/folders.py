"""Image folders (``config.dataset='folder:<path>'``): listed, split and labelled here,
decoded once in parallel into a prepared copy (``prepared``, ``decode``), then read
from that copy by every later launch.

- Labels come from class subfolders, in sorted order (none: every label 0). With
  ``train/`` and ``test/`` subfolders those are the splits; otherwise a file is a test
  image by its path's hash (``image_files.in_test_split``), so adding files moves none of
  the others.
- Every image is decoded as ``image_files.read_image`` says (Pillow; ``image_size`` resizes
  and centre-crops, ``channels`` converts). Images of mixed shapes without either are
  an error naming two that differ; so is an unreadable file, unless
  ``skip_unreadable``, which leaves such files out and counts them in ``details``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from stat import S_ISREG

import numpy as np

from aejax.data import decode, image_files, prepared, readers, rows
from aejax.data.core import DataError, Dataset, Fingerprint, _shape, hashed_labels

SPLITS = ("train", "test")


def _image_files(folder: pathlib.Path, prefix: str = "") -> list[list]:
  """``[path under folder (posix, after prefix), size, modification time (ns)]`` of
  each image file under ``folder``, in ``pathlib``'s order of their paths. Symbolic
  links are followed, to folders (a class subfolder linked from elsewhere) as to
  files; a folder met again (a link back up, a loop) is walked once. A link to
  nothing is kept (size -1), so that reading it is the error naming it. Strings and
  one ``stat`` a file: a launch lists every file of the folder again."""
  from PIL import Image
  # Formats Pillow can open (PDF, say, it only writes).
  extensions = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
  found, walked = [], set()
  for root, subfolders, names in os.walk(folder, followlinks=True):
    real = os.path.realpath(root)
    if real in walked:
      subfolders[:] = []
      continue
    walked.add(real)
    under = os.path.relpath(root, folder)
    under = prefix if under == "." else prefix + under.replace(os.sep, "/") + "/"
    for name in names:
      if name.startswith(".") or "." + name.rpartition(".")[2].lower() not in extensions:
        continue
      try:
        stat = os.stat(os.path.join(root, name))
      except OSError:  # a link to nothing (or to itself)
        found.append([under + name, -1, -1])
        continue
      if S_ISREG(stat.st_mode):
        found.append([under + name, stat.st_size, stat.st_mtime_ns])
  return sorted(found, key=lambda entry: entry[0].split("/"))


def listing(folder: pathlib.Path) -> list[list]:
  """The folder's image files (``_image_files``): those of its ``train/`` and ``test/``
  subfolders when it has both, else all; what its copy's manifest records."""
  if not folder.is_dir():
    raise DataError(f"Image folder {folder} does not exist.")
  if all((folder / s).is_dir() for s in SPLITS):
    return [e for s in SPLITS for e in _image_files(folder / s, f"{s}/")]
  return _image_files(folder)


def _classes(where: pathlib.Path, files: list[list], depth: int) -> list[str]:
  """The class names of ``files`` (paths under ``where``'s parent folder at ``depth``):
  the subfolders at that depth, if any."""
  if not files:
    raise DataError(f"{where} holds no image files (PNG, JPEG, WebP, BMP, ...).")
  parts = [entry[0].split("/")[depth:] for entry in files]
  classes = sorted({p[0] for p in parts if len(p) > 1})
  at_top = [p[0] for p in parts if len(p) == 1]
  if at_top and classes:
    raise DataError(f"{where} holds both images ({at_top[0]}) and class subfolders "
                    f"({classes[0]}/): put every image in its class's subfolder.")
  return classes


@dataclasses.dataclass(frozen=True)
class Layout:
  """A folder's files by split (``_image_files``' entries, paths under the folder),
  their labels, and what results.json says of them."""
  files: dict[str, list[list]]
  labels: dict[str, np.ndarray]
  classes: list[str]
  split: str

  @property
  def ordered(self) -> list[list]:
    """Every file, train split first."""
    return self.files["train"] + self.files["test"]


def layout(folder: pathlib.Path, files: list[list], test_fraction: float) -> Layout:
  """``files`` (``listing(folder)``) by split, with labels from class subfolders."""
  if all((folder / s).is_dir() for s in SPLITS):
    train, test = ([e for e in files if e[0].startswith(f"{s}/")] for s in SPLITS)
    train_classes, test_classes = (_classes(folder / s, entries, 1)
                                   for s, entries in zip(SPLITS, (train, test)))
    if bool(train_classes) != bool(test_classes):
      raise DataError(f"{folder}: one of train/ and test/ has class subfolders and the "
                      "other not; give both the same layout.")
    classes, depth = sorted(set(train_classes) | set(test_classes)), 1
    split = "the folder's train/ and test/ subfolders"
  else:
    classes = _classes(folder, files, 0)
    held = [image_files.in_test_split(entry[0], test_fraction) for entry in files]
    test = [entry for entry, out in zip(files, held) if out]
    train = [entry for entry, out in zip(files, held) if not out]
    depth = 0
    split = (f"by file name: a file is a test image when the first 32 bits of the sha256 "
             f"of its path under the folder, over 2^32, are below "
             f"test_fraction={test_fraction}")
    for name, entries in (("train", train), ("test", test)):
      if not entries:
        raise DataError(f"{folder}: the split by file name left the {name} split empty "
                        f"({len(files)} images); change --config.test_fraction or give "
                        "the folder train/ and test/ subfolders.")
  index = {c: i for i, c in enumerate(classes)}
  files = {"train": train, "test": test}
  labels = {s: readers.label_array([index[e[0].split("/")[depth]] for e in entries]
                                   if classes else [0] * len(entries))
            for s, entries in files.items()}
  return Layout(files, labels, classes, split)


def _first_image(paths: list[pathlib.Path], options: dict, skip: bool) -> tuple:
  """``(path, array, bits as stored)`` of the first readable image: its shape is every
  image's, and its depth the folder's (``image_files.folder_depth``)."""
  for path in paths:
    try:
      array, _, bits = image_files.read_image(path, **options)
      return path, array, bits
    except DataError:
      if not skip:
        raise
  raise DataError(f"None of the {len(paths)} images can be read.")


def _error(report: "decode.Reported", path: pathlib.Path, first_path: pathlib.Path,
           first: np.ndarray) -> DataError:
  """The one line for a worker's report on ``path``."""
  if report.kind == "unreadable":
    return DataError(report.detail)
  if report.kind == "changed":
    return DataError(f"{path} changed while it was being prepared; launch again to prepare "
                     "the folder from its new contents.")
  got, dtype = tuple(report.detail[0]), report.detail[1]
  if got == first.shape and dtype != first.dtype.str:  # a 16-bit file among 8-bit ones
    return image_files.mixed_depths(first_path, path)
  key = "image_size" if got[:2] != first.shape[:2] else "channels"
  return DataError(
      f"{first_path} is {_shape(first.shape)} but {path} is {_shape(got)}: images of mixed "
      f"sizes or channels need --config.{key}=<n> (image_size: resize and centre-crop to "
      "n x n; channels: 1 or 3).")


class _Hashing:
  """The copy's fingerprint (``core.Fingerprint``), its train rows hashed in order as
  the workers write them (the parent waits on them otherwise), and every block's
  checksum as the workers report it: ``Writer.finish``'s ``known``, with no pass
  over the copy after decoding."""

  def __init__(self, train_path: pathlib.Path, offset: int, n_train: int, first):
    self._fd, self._offset, self._row_bytes = os.open(train_path, os.O_RDONLY), offset, first.nbytes
    self._pending, self._next, self._n_train = {}, 0, n_train
    self.checksums = ({}, {})  # by file: first row -> its blocks' CRC-32s
    self.fingerprint = Fingerprint()
    self.fingerprint.begin((n_train, *first.shape), first.dtype)

  def chunk(self, file: int, first: int, count: int, checksums: list[int]) -> None:
    self.checksums[file][first] = checksums
    if file == 0:
      self._pending[first] = count
      while self._next in self._pending:  # the rows written so far, in order
        count = self._pending.pop(self._next)
        self.fingerprint.update(os.pread(self._fd, count * self._row_bytes,
                                         self._offset + self._next * self._row_bytes))
        self._next += count

  def known(self, labels: dict, test_path: pathlib.Path, pixel_sum: np.ndarray
            ) -> dict | None:
    """``Writer.finish``'s ``known``; None if a train row was not hashed (then it reads
    the copy back)."""
    if self._next != self._n_train:
      return None
    train_labels, test_labels = hashed_labels(labels["train"], labels["test"])
    self.fingerprint.add(train_labels)
    self.fingerprint.add(rows.Rows(test_path))
    self.fingerprint.add(test_labels)
    return {"fingerprint": self.fingerprint.hexdigest(), "pixel_sum": pixel_sum,
            "checksums": {s: np.asarray([c for _, cs in sorted(self.checksums[f].items())
                                         for c in cs], np.uint32)
                          for f, s in enumerate(SPLITS)}}

  def close(self) -> None:
    os.close(self._fd)


def _prepare(folder: pathlib.Path, files: list[list], test_fraction: float, options: dict,
             skip: bool):
  """``Request.prepare`` of a folder: splits and labels ``files``, then decodes every
  image into ``writer``'s files."""

  def prepare(writer: prepared.Writer) -> dict:
    found = layout(folder, files, test_fraction)
    path_of = lambda f, row: folder / found.files[SPLITS[f]][row][0]
    first_path, first, bits = _first_image([folder / e[0] for e in found.ordered], options,
                                           skip)
    # Every file at the folder's depth: the one asked for, else the first file's.
    at_depth = {**options, "bit_depth": image_files.folder_depth(options["bit_depth"], bits)}
    offsets = [writer.allocate(s, len(found.files[s]), first.shape, first.dtype)
               for s in SPLITS]
    writer.labels.update(found.labels)
    items = [(f, row, folder / name, size, mtime) for f, split in enumerate(SPLITS)
             for row, (name, size, mtime) in enumerate(found.files[split])]
    chunks = decode.chunks_of(items, rows.block_rows(first.nbytes))
    hashing = _Hashing(writer.path("train"), offsets[0], len(found.files["train"]), first)
    try:
      unreadable, pixel_sum = decode.decode_into(
          [writer.path(s) for s in SPLITS], offsets, chunks, shape=first.shape,
          dtype=first.dtype, options=at_depth, what=f"folder:{folder}",
          on_chunk=hashing.chunk, skip_unreadable=skip)
    except decode.Reported as report:
      raise _error(report, path_of(report.file, report.row), first_path, first) from None
    finally:
      hashing.close()
    details = {"image_size": options["image_size"], "channels": options["channels"],
               "bit_depth": 16 if first.dtype == np.uint16 else 8,
               "split": found.split, "classes": found.classes}
    if skip:
      for f, split in enumerate(SPLITS):
        bad = {row for g, row, _ in unreadable if g == f}
        if bad:
          keep = np.ones(len(found.files[split]), bool)
          keep[sorted(bad)] = False
          writer.keep(split, keep)
          if not keep.any():
            raise DataError(f"{folder}: no image of the {split} split can be read.")
      writer.skipped = [path_of(f, row).relative_to(folder).as_posix()
                        for f, row, _ in sorted(unreadable)]
      details["skipped_unreadable"] = len(writer.skipped)
    record = {"source": "folder", "location": str(folder), "details": details}
    if not unreadable:  # every row as written: what the workers measured holds
      record["known"] = hashing.known(found.labels, writer.path("test"), pixel_sum)
    return record

  return prepare


def read_folder(folder: str | pathlib.Path, *, image_size: int = 0, channels: int = 0,
                test_fraction: float = 0.1, name: str | None = None, bit_depth: int = 0,
                skip_unreadable: bool = False,
                prepared_dir: str | pathlib.Path | None = None) -> Dataset:
  """The images under ``folder`` as a Dataset read from its prepared copy (prepared
  first when there is none that matches the folder's files). ``image_size`` > 0
  resizes and centre-crops every image to that square; ``channels`` 1 or 3 converts
  every image to grey or RGB (0: as stored, which must agree); ``prepared_dir``: where
  copies live (None: ``prepared.default_root()``)."""
  folder = pathlib.Path(folder).expanduser()
  files = listing(folder)
  options = {"image_size": image_size, "channels": channels, "bit_depth": bit_depth}
  request = prepared.Request(
      what=f"folder:{folder}",
      identity={"kind": "folder", "location": str(folder.resolve()),
                "test_fraction": test_fraction, **options},
      manifest=files,
      prepare=_prepare(folder, files, test_fraction, options, skip_unreadable),
      skip_unreadable=skip_unreadable)
  root = pathlib.Path(prepared_dir).expanduser() if prepared_dir else prepared.default_root()
  return prepared.load(request, root, name or f"folder:{folder}")
