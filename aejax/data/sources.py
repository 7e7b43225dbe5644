"""Where data comes from: ``load(config)`` is the one place a dataset is found.

For the MNIST family (``dataset='mnist'``, ``'fashion_mnist'``, ``'kmnist'``) it
tries, in order:

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

``dataset='mnist_sample'`` asks for the bundled sample directly; ``'tfds:<name>'``
any image dataset of the TFDS catalog: read without TensorFlow where it is prepared
in array_record format in TFDS's data dir, else prepared through TensorFlow
(``pip install "aejax[tensorflow]"``). A user's own data (``aejax.data.readers``):
``'folder:<path>'`` a folder of image files, ``'npz:<file>'`` arrays, ``'cifar10'``
and ``'cifar100'`` their binary distribution under ``config.data_dir`` (without one:
downloaded through TFDS's download manager when it can be, as MNIST is). The TFDS
builders are imported only here and only when needed: tensorflow-datasets is slow to
import.
"""

from __future__ import annotations

import os

from absl import logging

from aejax.data import readers
from aejax.data.core import (DataError, Dataset, ENV_DATA_DIR, IDX_DATASETS,
                             _FULL_DATA_HINT, load_sample, read_idx_folder)

# Besides these, 'tfds:<name>' names any dataset of the TFDS catalog, 'folder:<path>'
# a folder of images and 'npz:<file>' arrays.
DATASETS = (*IDX_DATASETS, "mnist_sample", *readers.CIFAR)
TFDS_PREFIX = "tfds:"
FOLDER_PREFIX = "folder:"
NPZ_PREFIX = "npz:"


def is_arrays(name: str) -> bool:
  """Whether ``config.dataset`` names arrays a Python session held in memory
  (``readers.from_arrays``): ``'arrays'`` or ``'arrays:<name>'``."""
  return name == readers.ARRAYS_PREFIX or name.startswith(readers.ARRAYS_PREFIX + ":")


def validate_dataset_name(name: str) -> None:
  """Raises ValueError, naming ``config.dataset``, for a name ``load`` cannot serve."""
  if is_arrays(name):
    return
  for prefix, what in ((FOLDER_PREFIX, "<folder of images>"), (NPZ_PREFIX, "<file.npz>")):
    if name.startswith(prefix):
      if not name[len(prefix):]:
        raise ValueError(f"config.dataset={name!r} names no file: use {prefix}{what}.")
      return
  if name.startswith(TFDS_PREFIX):
    # Without TensorFlow, a dataset prepared as array_record still reads (load).
    if not name[len(TFDS_PREFIX):]:
      raise ValueError(f"config.dataset={name!r} names no dataset: use tfds:<name>, "
                       "e.g. tfds:cifar10.")
  elif name not in DATASETS:
    raise ValueError(f"config.dataset={name!r} is unknown; choose one of "
                     f"{list(DATASETS)}, folder:<path>, npz:<file> or tfds:<name>.")


def _tfds_data():
  """``aejax.data.tfds_builders``, or None with a warning when tensorflow-datasets is unusable."""
  try:
    from aejax.data import tfds_builders as tfds_data  # heavy, so only here
  except ImportError as e:
    logging.warning("tensorflow-datasets cannot be imported (%s); skipping it.", e)
    return None
  return tfds_data


def _try_tfds(name: str) -> Dataset | None:
  """``name`` from TFDS's data dir when it is prepared there, else None."""
  tfds_data = _tfds_data()
  return None if tfds_data is None else tfds_data.load_prepared(name)


def _try_tfds_download(name: str) -> Dataset | None:
  """``name`` downloaded and prepared through TFDS; None when offline."""
  tfds_data = _tfds_data()
  return None if tfds_data is None else tfds_data.download_and_load(name)


def _load_cifar(name: str, data_dir: str) -> Dataset:
  """CIFAR's binary records from ``data_dir``; without one, as the MNIST family: an
  earlier download in TFDS's data dir, else a download through TFDS's download
  manager when the host answers within seconds, else an error saying what to do.
  ($AEJAX_DATA_DIR names the MNIST folder, so it is not read here.)"""
  if data_dir:
    return readers.read_cifar(data_dir, name)  # a named folder wins, or is an error
  tfds_data = _tfds_data()
  url = readers.CIFAR_URLS[name]
  why = "tensorflow-datasets, which downloads it, cannot be imported"
  if tfds_data is not None:
    ds = tfds_data.load_cifar_downloaded(name) or tfds_data.download_cifar(name)
    if ds is not None:
      return ds
    why = (f"{tfds_data.cifar_download_dir()} holds no download of it, and "
           f"{url.split('/')[2]} cannot be reached to download it")
  raise DataError(
      f"{name} was not found: no --config.data_dir was given, {why}. Download and "
      f"unpack {url} and pass --config.data_dir=<the folder holding "
      f"{readers.CIFAR[name][0]}>.")


def load(config) -> Dataset:
  """Returns the dataset ``config.dataset`` names, from the first source that has it."""
  name = config.dataset
  validate_dataset_name(name)
  if name == "mnist_sample":
    return load_sample()
  if is_arrays(name):
    raise DataError(f"config.dataset={name!r} was arrays held in memory by a Python "
                    "session, which no file holds: give them again, as "
                    "aejax.train(config, workdir, data=...), to train or resume this run.")
  if name.startswith(FOLDER_PREFIX):
    return readers.read_folder(name[len(FOLDER_PREFIX):], image_size=config.image_size,
                               channels=config.channels, test_fraction=config.test_fraction,
                               name=name)
  if name.startswith(NPZ_PREFIX):
    return readers.read_npz(name[len(NPZ_PREFIX):], name=name, standardize=config.standardize)
  if name.startswith(TFDS_PREFIX):
    from aejax.data import tfds_builders
    tfds_name = name[len(TFDS_PREFIX):]
    folder = tfds_builders.find_array_record(tfds_name)
    if folder is not None:  # no TensorFlow needed
      return tfds_builders.read_catalog_array_record(tfds_name, folder)
    return tfds_builders.load_with_tensorflow(tfds_name)

  data_dir = config.data_dir or os.environ.get(ENV_DATA_DIR)
  if name in readers.CIFAR:
    return _load_cifar(name, config.data_dir)
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
