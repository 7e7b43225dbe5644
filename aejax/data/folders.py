"""Image folders (``config.dataset='folder:<path>'``): listed, split and labelled here,
decoded once in parallel into a prepared copy (``prepared``, ``decode``), then read
from that copy by every later launch.

- Labels come from class subfolders, in sorted order (none: every label 0). With
  ``train/`` and ``test/`` subfolders those are the splits; otherwise a file is a test
  image by its path's hash (``readers.in_test_split``), so adding files moves none of
  the others.
- Every image is decoded as ``readers.read_image`` says (Pillow; ``image_size`` resizes
  and centre-crops, ``channels`` converts). Images of mixed shapes without either are
  an error naming two that differ; so is an unreadable file, unless
  ``skip_unreadable``, which leaves such files out and counts them in ``details``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from aejax.data import decode, prepared, readers
from aejax.data.core import DataError, Dataset, _shape

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Layout:
  """A folder's files by split, their labels, and what results.json says of them."""
  files: dict[str, list[pathlib.Path]]
  labels: dict[str, np.ndarray]
  classes: list[str]
  split: str

  @property
  def all_files(self) -> list[pathlib.Path]:
    return self.files["train"] + self.files["test"]


def layout(folder: pathlib.Path, test_fraction: float) -> Layout:
  """The files of ``folder`` by split, with labels from class subfolders."""
  if not folder.is_dir():
    raise DataError(f"Image folder {folder} does not exist.")
  subfolders = {s: folder / s for s in SPLITS}
  if all(p.is_dir() for p in subfolders.values()):
    (train, train_classes), (test, test_classes) = (readers.labelled_files(p)
                                                    for p in subfolders.values())
    if bool(train_classes) != bool(test_classes):
      raise DataError(f"{folder}: one of train/ and test/ has class subfolders and the "
                      "other not; give both the same layout.")
    classes = sorted(set(train_classes) | set(test_classes))
    roots = subfolders
    split = "the folder's train/ and test/ subfolders"
  else:
    files, classes = readers.labelled_files(folder)
    relative = lambda p: p.relative_to(folder).as_posix()
    test = [p for p in files if readers.in_test_split(relative(p), test_fraction)]
    train = [p for p in files if not readers.in_test_split(relative(p), test_fraction)]
    roots = {"train": folder, "test": folder}
    split = (f"by file name: a file is a test image when the first 32 bits of the sha256 "
             f"of its path under the folder, over 2^32, are below "
             f"test_fraction={test_fraction}")
    for name, paths in (("train", train), ("test", test)):
      if not paths:
        raise DataError(f"{folder}: the split by file name left the {name} split empty "
                        f"({len(files)} images); change --config.test_fraction or give "
                        "the folder train/ and test/ subfolders.")
  index = {c: i for i, c in enumerate(classes)}
  files = {"train": train, "test": test}
  labels = {s: readers.label_array([index[p.relative_to(roots[s]).parts[0]] for p in paths]
                                   if classes else [0] * len(paths))
            for s, paths in files.items()}
  return Layout(files, labels, classes, split)


def _first_image(paths: list[pathlib.Path], options: dict, skip: bool) -> tuple:
  """``(path, array)`` of the first readable image: its shape and dtype are every
  image's."""
  for path in paths:
    try:
      return path, readers.read_image(path, **options)[0]
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
  got = tuple(report.detail[0])
  key = "image_size" if got[:2] != first.shape[:2] else "channels"
  return DataError(
      f"{first_path} is {_shape(first.shape)} but {path} is {_shape(got)}: images of mixed "
      f"sizes or channels need --config.{key}=<n> (image_size: resize and centre-crop to "
      "n x n; channels: 1 or 3).")


def _prepare(folder: pathlib.Path, found: Layout, options: dict, skip: bool):
  """``Request.prepare`` of a folder: decodes every image into ``writer``'s files."""

  def prepare(writer: prepared.Writer, manifest: list[list]) -> dict:
    first_path, first = _first_image(found.all_files, options, skip)
    offsets = [writer.allocate(s, len(found.files[s]), first.shape, first.dtype)
               for s in SPLITS]
    writer.labels.update(found.labels)
    stats = {entry[0]: entry[1:] for entry in manifest}
    items = [(f, row, path, *stats[path.relative_to(folder).as_posix()])
             for f, split in enumerate(SPLITS) for row, path in enumerate(found.files[split])]
    try:
      unreadable = decode.decode_into(
          [writer.path(s) for s in SPLITS], offsets, items, shape=first.shape,
          dtype=first.dtype, options=options, what=f"folder:{folder}", skip_unreadable=skip)
    except decode.Reported as report:
      raise _error(report, found.files[SPLITS[report.file]][report.row], first_path,
                   first) from None
    path_of = lambda f, row: found.files[SPLITS[f]][row]
    details = {"image_size": options["image_size"], "channels": options["channels"],
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
    return {"source": "folder", "location": str(folder), "details": details}

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
  found = layout(folder, test_fraction)
  options = {"image_size": image_size, "channels": channels, "bit_depth": bit_depth}
  request = prepared.Request(
      what=f"folder:{folder}",
      identity={"kind": "folder", "location": str(folder.resolve()),
                "test_fraction": test_fraction, **options},
      files=found.all_files, base=folder,
      prepare=_prepare(folder, found, options, skip_unreadable),
      skip_unreadable=skip_unreadable)
  root = pathlib.Path(prepared_dir).expanduser() if prepared_dir else prepared.default_root()
  return prepared.load(request, root, name or f"folder:{folder}")
