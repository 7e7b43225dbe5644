"""Input that streams from disk (``config.input='stream'``): a grain pipeline over the
TFDS array_record files of the train set.

Whatever the source, the train split is read from ``array_record`` files of
TFDS-serialized examples: a copy prepared by aejax's TensorFlow-free TFDS builders
(``tfds_builders``) is used where it lies; any other image data (a folder of
IDX files, the bundled sample, an image folder, npz arrays, CIFAR) is written once,
in the same record format, into ``<TFDS data dir>/aejax_stream/<fingerprint>/`` (so
the copy is keyed by the data's identity, never by a path that could hold other
images later).

TFDS stores records in an order of its own; each keeps its position in the source
(``index``). ``positions`` maps that source position to the record's, so a batch of
source indices (the epoch's permutation, drawn exactly as the device path draws it)
reads the same images the device path gathers. The map is built once per copy by
reading every record, which also checks each image against the data loaded for the
run, and kept beside the copy (``POSITIONS_FILE``).

The pipeline: one element per chunk of ``chunk_batches`` consecutive batches of an
epoch, holding only this process's rows of each global batch, in the data's dtype
(uint8, uint16, float32 vectors) ``[k, rows, H, W, C]``; grain reads elements ahead in background threads. The
iterator's state (``get_state``) and the batch it stands at are what a checkpoint
keeps, so a resumed run continues with the chunk after the last one trained, at an
epoch's end or inside one.

This module imports grain and tensorflow-datasets; import it only for streaming.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pathlib
import threading
from typing import Any, Callable, Iterator

import grain
import numpy as np
from absl import logging

from aejax.data import core as data_lib
from aejax.data import sources
from aejax.data import tfds_builders

# Background reading: threads, and chunks read ahead (at least one per thread, as
# grain asks). One thread per core, up to 16: on an H200 host's 16 cores, vanilla's
# streamed epoch took 0.39-0.50 s with 16 threads against 0.62-0.67 s with 2 (Python's
# parsing of the records holds the GIL, so they scale less than the cores).
READ_THREADS = min(16, os.cpu_count() or 2)
PREFETCH_CHUNKS = max(4, READ_THREADS)
# Beside the copy; renamed when the copy's layout changed (aejax's own record files
# replaced the TFDS builder's), so that no older map is read for a newer copy.
POSITIONS_FILE = "aejax_stream_positions.npy"
COPY_NAME = "aejax_stream"  # the file stem of the copies this module writes


def cache_root() -> pathlib.Path:
  return tfds_builders.default_data_dir() / "aejax_stream"


def _example(image: np.ndarray, index: int) -> bytes:
  """One record as TFDS serializes its examples (a tf.train.Example proto, the image a
  raw-bytes tensor), so one parser reads aejax's copies and TFDS-prepared files alike."""
  from tensorflow_datasets.proto import tf_example_pb2
  example = tf_example_pb2.Example()
  example.features.feature["image"].bytes_list.value.append(image.tobytes())
  example.features.feature["index"].int64_list.value.append(index)
  return example.SerializeToString()


def write_train_records(path: pathlib.Path, images: np.ndarray) -> None:
  """Writes images (or vectors) ``[N, ...]`` as one array_record file, in source order, each
  record keeping its ``index``; atomically (a temporary name, then a rename)."""
  from array_record.python import array_record_module
  tmp = path.with_name(f".writing.{os.getpid()}")  # outside the copy's file pattern
  # group_size:1: every record its own chunk, for random access (grain's advice).
  writer = array_record_module.ArrayRecordWriter(str(tmp), "group_size:1")
  try:
    try:
      for index, image in enumerate(images):
        writer.write(_example(np.ascontiguousarray(image), index))
    finally:
      writer.close()
    tmp.replace(path)
  except BaseException:  # a full disk, an interrupt: no half-written file stays
    tmp.unlink(missing_ok=True)
    raise


def array_record_folder(dataset: data_lib.Dataset, name: str) -> pathlib.Path:
  """The folder of ``dataset``'s train split as array_record files: where its source
  (``config.dataset=name``) says they lie (a TFDS-prepared copy); for any other data
  (IDX folders, the sample, image folders, npz images or vectors, CIFAR) a copy
  written once from the loaded arrays, keyed by the data's fingerprint."""
  folder = sources.array_records(name, dataset)
  if folder is not None:
    return folder
  folder = cache_root() / dataset.fingerprint[:20]
  path = folder / f"{COPY_NAME}-train.array_record-00000-of-00001"
  folder.mkdir(parents=True, exist_ok=True)
  # One writer per copy: processes of one run on one host share it.
  with open(folder / ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    for killed in folder.glob(".writing.*"):  # a killed writer's; none writes now
      killed.unlink(missing_ok=True)
    if not path.is_file():
      logging.info("Writing %s once as array_record for config.input='stream': %s",
                   dataset.name, path)
      write_train_records(path, dataset.train_images)
  return folder


def _train_paths(folder: pathlib.Path) -> list[str]:
  paths = sorted(str(p) for p in folder.glob("*-train.array_record-*"))
  if not paths:
    raise data_lib.DataError(f"{folder} holds no train array_record files.")
  return paths


def _parse(records: list[bytes], image_shape, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
  """``(images [n, *image_shape] of dtype, source index int64 [n])`` of serialized
  TFDS examples (tf.train.Example protos; the image a raw-bytes tensor)."""
  from tensorflow_datasets.proto import tf_example_pb2
  images, indices = [], []
  for record in records:
    feature = tf_example_pb2.Example.FromString(record).features.feature
    images.append(feature["image"].bytes_list.value[0])
    indices.append(feature["index"].int64_list.value[0])
  return (np.frombuffer(b"".join(images), dtype).reshape(len(records), *image_shape),
          np.asarray(indices, np.int64))


def train_positions(folder: pathlib.Path, dataset: data_lib.Dataset) -> np.ndarray:
  """int64 ``[n_train]``: the record position of each source position, checked once
  against ``dataset``'s images and kept beside the copy."""
  keep = cache_root() / dataset.fingerprint[:20] / POSITIONS_FILE
  if keep.is_file():
    positions = np.load(keep)
    if positions.shape == (dataset.n_train,):
      return positions
  source = grain.sources.ArrayRecordDataSource(_train_paths(folder))
  if len(source) != dataset.n_train:
    raise data_lib.DataError(f"{folder} holds {len(source)} train records; the run's "
                             f"data has {dataset.n_train} images.")
  positions = np.full(dataset.n_train, -1, np.int64)
  for start in range(0, len(source), 10_000):
    stop = min(start + 10_000, len(source))
    images, indices = _parse(source.__getitems__(list(range(start, stop))),
                             dataset.image_shape, dataset.train_images.dtype)
    if indices.min() < 0 or indices.max() >= dataset.n_train or not np.array_equal(
        images, dataset.train_images[indices]):
      raise data_lib.DataError(f"The array_record copy {folder} does not hold the run's "
                               "images; delete it to have it written again.")
    positions[indices] = np.arange(start, stop)
  if (positions < 0).any():
    raise data_lib.DataError(f"{folder} lacks some of the run's training images.")
  keep.parent.mkdir(parents=True, exist_ok=True)
  tmp = keep.with_name(f"{keep.stem}.{os.getpid()}.tmp.npy")  # processes of one run
  np.save(tmp, positions)
  tmp.replace(keep)
  return positions


def records_reader(folder: pathlib.Path, positions: np.ndarray, image_shape,
                   dtype=np.uint8) -> Callable[[np.ndarray], np.ndarray]:
  """``read(indices) -> images [*indices.shape, *image_shape]`` of source indices from
  the array_record files in ``folder`` (``positions``: ``train_positions``)."""
  source = grain.sources.ArrayRecordDataSource(_train_paths(folder))
  image_shape = tuple(image_shape)

  def read(indices: np.ndarray) -> np.ndarray:
    wanted = positions[indices]
    # Sorted reads are ~2x faster from array_record than the permutation's order.
    unique, inverse = np.unique(wanted, return_inverse=True)
    images, _ = _parse(source.__getitems__(unique.tolist()), image_shape, dtype)
    return images[inverse.reshape(-1)].reshape(*wanted.shape, *image_shape)

  return read


@dataclasses.dataclass(frozen=True)
class Layout:
  """How an epoch is cut into elements: ``steps`` batches, of which this process reads
  ``rows`` of each, ``chunk_batches`` consecutive batches an element, for
  ``num_epochs`` epochs."""
  steps: int
  rows: slice
  chunk_batches: int
  num_epochs: int

  @property
  def chunks_per_epoch(self) -> int:
    return -(-self.steps // self.chunk_batches)


class Stream:
  """This process's rows of every global batch, ``layout.chunk_batches`` at a time,
  gathered by ``read(indices) -> images`` (``records_reader``, or a prepared copy's
  ``rows.Rows.take``, which reads its rows from disk).

  ``order(epoch)`` is the epoch's batch order, int32 ``[steps, batch_size]`` of
  source indices (the device path's permutation). Elements are dicts: ``epoch``,
  ``batch`` (the chunk's first batch in its epoch) and ``images`` of ``dtype``
  ``[k, len(rows), *image_shape]``.
  """

  def __init__(self, read: Callable[[np.ndarray], np.ndarray],
               order: Callable[[int], np.ndarray], layout: Layout):
    self.layout, self._gather = layout, read
    self._order, self._orders, self._lock = order, {}, threading.Lock()
    dataset = grain.MapDataset.range(layout.num_epochs * layout.chunks_per_epoch).map(
        self._read)
    self._dataset = dataset.to_iter_dataset(grain.ReadOptions(
        num_threads=READ_THREADS, prefetch_buffer_size=PREFETCH_CHUNKS))
    self._iterator, self._expected, self._lead = None, (0, 0), None

  def _epoch_order(self, epoch: int) -> np.ndarray:
    with self._lock:  # grain's threads ask for the same epoch at once
      if epoch not in self._orders:
        self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
        self._orders[epoch] = np.asarray(self._order(epoch))
      return self._orders[epoch]

  def _read(self, index: int) -> dict[str, Any]:
    layout = self.layout
    epoch, chunk = divmod(index, layout.chunks_per_epoch)
    first = chunk * layout.chunk_batches
    return self._read_batches(epoch, first, min(first + layout.chunk_batches, layout.steps))

  def _read_batches(self, epoch: int, first: int, last: int) -> dict[str, Any]:
    """Batches ``first:last`` of ``epoch``: this process's rows of each."""
    layout = self.layout
    wanted = self._epoch_order(epoch)[first:last, layout.rows]
    return {"epoch": epoch, "batch": first, "images": self._gather(wanted)}

  def start(self, epoch: int, batch: int = 0, state: dict | None = None) -> None:
    """Positions the iterator at batch ``batch`` of ``epoch``: from a checkpoint's
    saved iterator ``state`` when given (checked against the position as it is
    read), else computed. A batch inside a chunk (a run resumed with other chunks)
    first reads the rest of that chunk on its own."""
    layout = self.layout
    grid = -(-batch // layout.chunk_batches)  # the first whole chunk from ``batch``
    self._iterator = iter(self._dataset)
    self._iterator.set_state(state or {"next_index": epoch * layout.chunks_per_epoch + grid})
    self._expected = (epoch, batch)
    self._lead = None if batch % layout.chunk_batches == 0 else self._read_batches(
        epoch, batch, min(grid * layout.chunk_batches, layout.steps))

  def epoch(self, epoch: int) -> Iterator[np.ndarray]:
    """The chunks of ``epoch`` from where the stream stands, in order."""
    while self._expected[0] == epoch:
      element, self._lead = (self._lead or next(self._iterator)), None
      if (element["epoch"], element["batch"]) != self._expected:
        raise RuntimeError(f"The input stream is at epoch {element['epoch'] + 1}, batch "
                           f"{element['batch'] + 1}; training expects epoch "
                           f"{self._expected[0] + 1}, batch {self._expected[1] + 1}.")
      following = element["batch"] + len(element["images"])
      self._expected = (epoch + 1, 0) if following >= self.layout.steps else (epoch, following)
      yield element["images"]

  def position(self) -> dict:
    """Where the stream stands, for a checkpoint's metadata."""
    return {"epoch": self._expected[0], "batch": self._expected[1],
            "chunk_batches": self.layout.chunk_batches, "iterator": self._iterator.get_state()}
