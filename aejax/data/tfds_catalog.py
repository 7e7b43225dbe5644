"""Datasets of the TFDS catalog (``tfds:<name>``) prepared in array_record format in
TFDS's data dir, found and read with no TensorFlow.

A catalog dataset prepared elsewhere (``tfds build <name> --file_format=array_record``)
and copied into the data dir is read through its builder's data source; one that is not
prepared so goes through TensorFlow (``tfds_tensorflow``).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from aejax.data import core as data_lib
from aejax.data.tfds_builders import default_data_dir


def find_array_record(tfds_name: str, data_dir: str | os.PathLike | None = None
                      ) -> pathlib.Path | None:
  """The folder of ``tfds_name`` (``name``, ``name/config``, optionally ``:version``)
  prepared in array_record format under TFDS's data dir, the newest version; None
  when there is none."""
  name, _, version = tfds_name.partition(":")
  root = pathlib.Path(data_dir or default_data_dir()).expanduser() / name
  found = [p.parent for p in root.glob("**/features.json")
           if any(p.parent.glob("*.array_record-*")) and (not version or p.parent.name == version)]
  if not found:
    return None
  return max(found, key=lambda p: (tfds.core.Version(p.name) if tfds.core.Version.is_valid(
      p.name) else tfds.core.Version("0.0.0"), str(p)))


def read_catalog_array_record(tfds_name: str, folder: pathlib.Path) -> data_lib.Dataset:
  """A TFDS catalog dataset prepared as array_record in ``folder``, read through its
  TensorFlow-free data source (the builder's ``as_data_source``, which decodes an
  ``Image`` feature with Pillow). Its first Image feature is the image, its first
  ClassLabel (if any) the label; it needs 'train' and 'test' splits."""
  builder = tfds.builder_from_directory(str(folder))
  features = builder.info.features
  image_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  label_keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  if not image_keys:
    raise data_lib.DataError(f"{folder} ({tfds_name}) has no Image feature: its features "
                             f"are {sorted(features)}.")
  missing = [s for s in ("train", "test") if s not in builder.info.splits]
  if missing:
    raise data_lib.DataError(f"{folder} ({tfds_name}) lacks the split(s) {missing}; it has "
                             f"{sorted(builder.info.splits)}.")
  sources = builder.as_data_source()
  arrays = {}
  for split in ("train", "test"):
    source = sources[split]
    images, labels = [], []
    for start in range(0, len(source), 1000):
      for record in source.__getitems__(list(range(start, min(start + 1000, len(source))))):
        image = np.asarray(record[image_keys[0]])
        if images and image.shape != images[0].shape:
          raise data_lib.DataError(
              f"{folder}: {split} record {len(images)} is {image.shape}, record 0 is "
              f"{images[0].shape}: images of mixed sizes cannot be stacked.")
        images.append(image)
        labels.append(int(record[label_keys[0]]) if label_keys else 0)
    stacked = np.stack(images) if images else np.zeros((0, 1, 1, 1), np.uint8)
    if stacked.dtype != np.uint8:
      raise data_lib.DataError(f"{folder}: {split} images are {stacked.dtype}; aejax reads "
                               "uint8 images.")
    arrays[f"{split}_images"] = stacked if stacked.ndim == 4 else stacked[..., None]
    arrays[f"{split}_labels"] = np.asarray(labels, data_lib.LABEL_DTYPE)
  return data_lib.Dataset(name=f"tfds:{tfds_name}", source="tfds_array_record",
                          location=str(folder), **arrays,
                          details={"image_feature": image_keys[0],
                                   "label_feature": label_keys[0] if label_keys else None})
