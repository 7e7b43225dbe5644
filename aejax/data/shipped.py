"""The data sources that ship with aejax, registered in ``sources`` (its docstring
says what a source declares). Each reader is imported only when its data is read:
tensorflow-datasets is slow to import.

For the MNIST family (``'mnist'``, ``'fashion_mnist'``, ``'kmnist'``) ``load`` tries,
in order:

1. a folder of IDX files named by ``config.data_dir``, else ``$AEJAX_DATA_DIR``; a
   folder that was named is used or is an error (missing, lacking files, truncated),
   never skipped for another source;
2. tensorflow-datasets' data dir (``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``),
   when it holds the dataset prepared by ``aejax.data.tfds_builders`` (no TensorFlow
   needed);
3. a download through tensorflow-datasets, only when the files' host answers within
   seconds (an offline machine says so and goes on at once);
4. for ``mnist`` only, the real MNIST sample bundled in this package (6,000 training
   and 1,000 test images), with a loud warning that says how to get the full set.

``'tfds:<name>'``: any image dataset of the TFDS catalog, read without TensorFlow
where it is prepared in array_record format in TFDS's data dir, else prepared through
TensorFlow (``pip install "aejax[tensorflow]"``). A user's own data
(``aejax.data.readers``): ``'folder:<path>'``, ``'npz:<file>'``, ``'npy:<folder>'``
(``.npy`` shards of vectors read in place, ``aejax.data.shards``), ``'cifar10'`` and
``'cifar100'`` (their binary distribution under ``config.data_dir``; without one,
downloaded through TFDS's download manager when it can be, as MNIST is).
"""

from __future__ import annotations

import os
import pathlib

from absl import logging

from aejax.data import folders, prepared, readers, shards
from aejax.data.core import (DataError, Dataset, ENV_DATA_DIR, IDX_DATASETS,
                             _FULL_DATA_HINT, load_sample, read_idx_folder)
from aejax.data.sources import Source, register


def _tfds_data():
  """``aejax.data.tfds_builders``, or None with a warning when tensorflow-datasets is unusable."""
  try:
    from aejax.data import tfds_builders  # heavy, so only here
  except ImportError as e:
    logging.warning("tensorflow-datasets cannot be imported (%s); skipping it.", e)
    return None
  return tfds_builders


def _downloads():
  """``aejax.data.downloads``, or None with a warning when tensorflow-datasets is unusable."""
  if _tfds_data() is None:
    return None
  from aejax.data import downloads  # imports tensorflow-datasets too
  return downloads


def _try_tfds(name: str) -> Dataset | None:
  """``name`` from TFDS's data dir when it is prepared there, else None."""
  tfds_data = _tfds_data()
  return None if tfds_data is None else tfds_data.load_prepared(name)


def _try_tfds_download(name: str) -> Dataset | None:
  """``name`` downloaded and prepared through TFDS; None when offline."""
  downloads = _downloads()
  return None if downloads is None else downloads.download_and_load(name)


def _tfds_records(dataset: Dataset) -> pathlib.Path | None:
  """A TFDS-prepared dataset's own array_record folder; TFRecord cannot stream."""
  if dataset.source != "tfds":
    return None
  if (pathlib.Path(dataset.location) / "features.json").is_file():
    return pathlib.Path(dataset.location)
  raise DataError(
      f"config.input='stream' reads array_record files; {dataset.name} was prepared by "
      "TensorFlow as TFRecord and has none: use --config.input=device.")


def _read_idx_family(name: str, config) -> Dataset:
  data_dir = config.data_dir or os.environ.get(ENV_DATA_DIR)
  if data_dir:
    return read_idx_folder(data_dir, name=name)  # a named folder wins, or is an error
  ds = _try_tfds(name)
  if ds is not None:
    return ds
  ds = _try_tfds_download(name)
  if ds is not None:
    return ds
  if name != "mnist":
    raise DataError(
        f"{name} was not found: it is not prepared in tensorflow-datasets' data dir, no "
        f"IDX folder was named (config.data_dir or {ENV_DATA_DIR}) and it cannot be "
        f"downloaded from here. With its four IDX files in a folder, either pass "
        f"--config.data_dir=<folder> or prepare it once: python -m "
        f"experiments.prepare_data --dataset={name} --manual_dir=<folder>.")
  logging.warning(
      "\n" + "!" * 78 + "\n"
      "FULL MNIST NOT FOUND: training on the bundled 6,000-image sample instead.\n"
      "Results will not match the full data set's. %s\n" + "!" * 78, _FULL_DATA_HINT)
  return load_sample()


def _read_cifar(name: str, config) -> Dataset:
  """CIFAR's binary records from ``config.data_dir``; without one, as the MNIST
  family: an earlier download in TFDS's data dir, else a download through TFDS's
  download manager when the host answers within seconds, else an error saying what to
  do. ($AEJAX_DATA_DIR names the MNIST folder, so it is not read here.)"""
  if config.data_dir:  # a named folder wins, or is an error
    data_dir = pathlib.Path(config.data_dir).expanduser()
    if not data_dir.is_dir():
      raise DataError(f"Data folder {data_dir} does not exist.")
    folder = readers.cifar_folder(data_dir, name)
    _, train, test, _, _ = readers.CIFAR[name]
    request = prepared.Request(
        what=name, identity={"kind": name, "location": str(folder.resolve())},
        manifest=prepared.manifest([folder / f for f in (*train, *test)], folder),
        prepare=prepared.from_reader(lambda: readers.read_cifar(data_dir, name)))
    return prepared.load(request, prepared.root(config), name)
  downloads = _downloads()
  url = readers.CIFAR_URLS[name]
  why = "tensorflow-datasets, which downloads it, cannot be imported"
  if downloads is not None:
    ds = downloads.load_cifar_downloaded(name) or downloads.download_cifar(name)
    if ds is not None:
      return ds
    why = (f"{downloads.cifar_download_dir()} holds no download of it, and "
           f"{url.split('/')[2]} cannot be reached to download it")
  raise DataError(
      f"{name} was not found: no --config.data_dir was given, {why}. Download and "
      f"unpack {url} and pass --config.data_dir=<the folder holding "
      f"{readers.CIFAR[name][0]}>.")


def _read_tfds(tfds_name: str, config) -> Dataset:
  from aejax.data import tfds_catalog
  folder = tfds_catalog.find_array_record(tfds_name)
  if folder is not None:  # no TensorFlow needed
    return tfds_catalog.read_catalog_array_record(tfds_name, folder)
  from aejax.data import tfds_tensorflow
  return tfds_tensorflow.load_with_tensorflow(tfds_name)


def _read_npz(argument: str, config) -> Dataset:
  path = pathlib.Path(argument).expanduser()
  if not path.is_file():
    raise DataError(f"npz file {path} does not exist.")
  request = prepared.Request(
      what=f"npz:{path}",
      identity={"kind": "npz", "location": str(path.resolve()),
                "standardize": config.standardize},
      manifest=prepared.manifest([path], path.parent),
      prepare=prepared.from_reader(lambda: readers.read_npz(
          path, name=config.dataset, standardize=config.standardize)))
  return prepared.load(request, prepared.root(config), config.dataset)


def _read_arrays(argument: str, config) -> Dataset:
  raise DataError(f"config.dataset={config.dataset!r} was arrays held in memory by a Python "
                  "session, which no file holds: give them again, as "
                  "aejax.train(config, workdir, data=...), to train or resume this run.")


for _name in IDX_DATASETS:
  register(Source(
      _name, _read_idx_family, keys=("data_dir",), array_records=_tfds_records,
      summary="the MNIST family's IDX files: `data_dir` or `$AEJAX_DATA_DIR`, else "
              "TFDS's data dir, else a download" + (", else the bundled sample"
                                                    if _name == "mnist" else "")))
register(Source("mnist_sample", lambda name, config: load_sample(),
                summary="the 6,000 + 1,000 MNIST images bundled with aejax"))
for _name in readers.CIFAR:
  register(Source(_name, _read_cifar, keys=("data_dir", "prepared_dir"),
                  array_records=_tfds_records,
                  summary="CIFAR's binary records under `data_dir` (read once into a "
                          "prepared copy), else a download"))
register(Source(
    "folder", lambda path, config: folders.read_folder(
        path, image_size=config.image_size, channels=config.channels,
        test_fraction=config.test_fraction, name=config.dataset, bit_depth=config.bit_depth,
        skip_unreadable=config.skip_unreadable, prepared_dir=config.prepared_dir),
    prefix=True, argument="<folder of images>",
    keys=("image_size", "channels", "bit_depth", "test_fraction", "skip_unreadable",
          "prepared_dir"),
    summary="image files Pillow opens, labels from class subfolders; decoded once in "
            "parallel into a prepared copy"))
register(Source(
    "npz", _read_npz, prefix=True, argument="<file.npz>", keys=("standardize", "prepared_dir"),
    summary="uint8 images or float vectors, `train` and `test` (+ labels); read once into "
            "a prepared copy"))
register(Source(
    "npy", shards.read_npy, prefix=True,
    argument="<folder of .npy shards>", keys=("standardize", "test_fraction", "prepared_dir"),
    summary="float vectors `[N, D]` in `.npy` shards, read in place, never whole in "
            "memory; statistics measured in one pass, kept"))
register(Source(
    "tfds", _read_tfds, prefix=True, argument="<name>", array_records=_tfds_records,
    summary="any image dataset of the TFDS catalog, array_record without TensorFlow"))
register(Source(
    readers.ARRAYS_PREFIX, _read_arrays, prefix=True, argument="<name>", optional=True,
    keys=("standardize", "test_fraction"),
    summary="arrays in memory, given to `aejax.train(..., data=...)` from Python"))
