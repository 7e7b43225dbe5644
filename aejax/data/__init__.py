"""Datasets: ``load(config)`` finds one (``sources``, the registry of data sources;
``shipped``, those aejax ships), ``from_arrays`` makes one of
arrays in memory (``readers``); ``Dataset`` and the IDX reader (``core``) are at the
bottom, the TensorFlow-free TFDS builders (``tfds_builders``) above them, and
``downloads``, ``tfds_catalog`` and ``tfds_tensorflow`` above those, imported only
where needed. Image folders, npz files and CIFAR are read once into prepared copies
(``folders``, ``prepared``, whose splits stay on disk as ``rows.Rows``); ``npy:``
shards are read in place (``shards``). ``stream`` (a grain pipeline over a copy's
rows or array_record files, for ``config.input='stream'``) is imported only when
streaming."""

from aejax.data.core import (ENV_DATA_DIR, IDX_DATASETS, IDX_FILES, SAMPLE_DIR, DataError,
                             DataSpec, Dataset, find_idx_file, load_sample, read_idx,
                             read_idx_folder)
from aejax.data.readers import from_arrays
from aejax.data.sources import Source, TFDS_PREFIX, is_arrays, load, register, validate_dataset_name
from aejax.data import shipped  # registers the sources that ship with aejax

__all__ = ["ENV_DATA_DIR", "IDX_DATASETS", "IDX_FILES", "SAMPLE_DIR", "DataError", "DataSpec",
           "Dataset", "find_idx_file", "load_sample", "read_idx", "read_idx_folder",
           "Source", "register", "TFDS_PREFIX", "from_arrays", "is_arrays", "load",
           "validate_dataset_name"]
