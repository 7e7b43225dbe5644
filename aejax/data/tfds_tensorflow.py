"""Any image dataset of the TFDS catalog (``tfds:<name>``), through TensorFlow.

The fallback for a catalog dataset not prepared in array_record format
(``tfds_catalog``): TFDS's own builders prepare and read with TensorFlow, which aejax
does not depend on, so its absence is a one-line error naming the extra to install.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import tensorflow_datasets as tfds

from aejax.data import core as data_lib, downloads
from aejax.data.tfds_builders import default_data_dir

TENSORFLOW_HINT = 'pip install "aejax[tensorflow]"'


def load_with_tensorflow(tfds_name: str) -> data_lib.Dataset:
  """Any image dataset in the TFDS catalog (``tfds:<name>``); needs TensorFlow.

  Reads the 'train' and 'test' splits of its supervised (image, label) pair into
  uint8 arrays, preparing it first when it is not and the network is reachable.
  """
  if importlib.util.find_spec("tensorflow") is None:
    raise data_lib.DataError(
        f"dataset tfds:{tfds_name} is not prepared in array_record format in "
        f"{default_data_dir()}, and preparing it needs TensorFlow: {TENSORFLOW_HINT}, "
        f"or prepare it where TensorFlow is (tfds build {tfds_name.partition(':')[0]} "
        f"--file_format=array_record) and copy its folder into this data dir. (mnist, "
        "fashion_mnist and kmnist need no TensorFlow.)")
  try:
    builder = tfds.builder(tfds_name, data_dir=str(default_data_dir()))
  except Exception as e:  # DatasetNotFoundError and friends
    raise data_lib.DataError(f"tensorflow-datasets has no dataset {tfds_name!r}: {e}") from e
  if not builder.is_prepared():
    if not downloads.network_reachable("https://storage.googleapis.com/"):
      raise data_lib.DataError(
          f"tfds:{tfds_name} is not prepared in {default_data_dir()} and the network "
          "cannot be reached to download it.")
    builder.download_and_prepare()
  if builder.info.supervised_keys is None or len(builder.info.supervised_keys) != 2:
    raise data_lib.DataError(f"tfds:{tfds_name} has no (image, label) supervised keys.")
  arrays = {}
  for split in ("train", "test"):
    try:
      # In batches rather than batch_size=-1 (one tensor through get_single_element),
      # which aborted the process in a trial with TensorFlow 2.21.
      batches = list(tfds.as_numpy(
          builder.as_dataset(split=split, batch_size=1024, as_supervised=True)))
    except (KeyError, ValueError) as e:  # TFDS's 'Unknown split' and the like
      raise data_lib.DataError(f"tfds:{tfds_name} has no usable '{split}' split: {e}") from e
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    if images.ndim == 3:  # grayscale stored without a channel axis
      images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4:
      raise data_lib.DataError(f"tfds:{tfds_name}'s images are {images.dtype} "
                               f"{images.shape}; aejax trains on uint8 [N, H, W, C].")
    if labels.min() < 0 or labels.max() > np.iinfo(data_lib.LABEL_DTYPE).max:
      raise data_lib.DataError(f"tfds:{tfds_name}'s labels are not class indices in "
                               "[0, 2^31): it is no classification dataset.")
    arrays[f"{split}_images"] = images
    arrays[f"{split}_labels"] = labels.astype(data_lib.LABEL_DTYPE)
  return data_lib.Dataset(name=f"tfds:{tfds_name}", source="tfds",
                          location=str(builder.data_dir), **arrays)
