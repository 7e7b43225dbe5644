"""The MNIST family through tensorflow-datasets, with no TensorFlow.

TFDS's own ``mnist`` builder needs TensorFlow to prepare (gzip through
``tf.io.gfile``, PNG encoding of its ``Image`` feature). The builders here parse the
IDX files with gzip and NumPy (``aejax.data.read_idx``) and declare the image as a
plain ``uint8 [28, 28, 1]`` tensor, so preparing writes ``array_record`` files and
reading goes through ``tfds.data_source`` with neither TensorFlow nor PIL.

One builder per dataset: ``aejax_mnist``, ``aejax_fashion_mnist``, ``aejax_kmnist``.
Their names differ from TFDS's built-in ``mnist`` & co. on purpose: those store PNG
images in TFRecord files, and sharing a name would make either reader trip over the
other's files in the same TFDS data dir. The data lands in
``$TFDS_DATA_DIR/aejax_<name>/<version>/`` (default ``~/tensorflow_datasets``).

Sources of the IDX files, in order:

- a manual folder holding the four files (raw or .gz), verified by parsing them;
- otherwise TFDS's download manager fetches the canonical files and checks each
  against the size and sha256 that the installed tensorflow_datasets package
  registers for them (its ``url_checksums/<name>.txt``, read at run time).

TFDS writes the records in an order of its own (by key hash): a prepared split holds
exactly the source's images and labels, as a multiset.

The rest of TFDS's part in aejax lives beside this module: ``downloads`` (the quick
network probe, the MNIST family's download and CIFAR's), ``tfds_catalog`` (catalog
datasets prepared as array_record, read without TensorFlow) and ``tfds_tensorflow``
(the rest of the catalog, through TensorFlow).
"""

from __future__ import annotations

import os
import pathlib
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.core.utils import py_utils

from aejax.data import core as data_lib

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Both the MNIST-family releases and the bundled checks assume these split sizes.
CANONICAL_COUNTS = {"train": 60_000, "test": 10_000}



def default_data_dir() -> pathlib.Path:
  """TFDS's data dir: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (read now)."""
  return pathlib.Path(tfds.core.constants.get_default_data_dir()).expanduser()


# ------------------------------------------------------------------ the builders


class _IdxBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Prepares one MNIST-family dataset from its four IDX files, TensorFlow-free."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "uint8 [28, 28, 1] tensors parsed with NumPy; no TensorFlow.",
      "1.1.0": "Each example keeps its position in the IDX file ('index'), so reading "
               "gives the source order back (TFDS stores records in hash order).",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
      "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw or .gz) in one folder and "
      "pass it as the manual folder: python -m experiments.prepare_data "
      "--dataset=<name> --manual_dir=<folder>.")

  URL = ""  # the folder of the canonical .gz files
  CHECKSUMS_NAME = ""  # the file in tensorflow_datasets/url_checksums/ that registers them
  CLASS_NAMES: tuple[str, ...] = ()
  DESCRIPTION = ""
  HOMEPAGE = ""

  @py_utils.classproperty
  @classmethod
  def url_infos(cls):
    """Size and sha256 of each canonical file, as the installed TFDS registers them.

    Read from the package at run time rather than copied, so they stay whatever
    TFDS itself checks its built-in builder's downloads against.
    """
    path = tfds.core.utils.tfds_path() / "url_checksums" / f"{cls.CHECKSUMS_NAME}.txt"
    return tfds.core.download.checksums.load_url_infos(path)

  @classmethod
  def urls(cls) -> dict[str, str]:
    return {key: urllib.parse.urljoin(cls.URL, stem + ".gz")
            for key, stem in data_lib.IDX_FILES.items()}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        # A plain tensor rather than tfds.features.Image: Image stores PNG, whose
        # encoding needs TensorFlow (or PIL) when preparing and decoding when reading.
        # Stored as raw bytes: the default encoding widens every pixel to an int64
        # in a Python loop, which made preparing and reading several times slower.
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=self.CLASS_NAMES),
            "index": tfds.features.Scalar(dtype=np.int64,
                                          doc="Position in the source IDX file."),
        }),
        supervised_keys=("image", "label"),
        homepage=self.HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    folder = _manual_folder(dl_manager)
    if folder is not None:
      # The manual folder's files are checked by parsing (headers, lengths, counts,
      # shapes, labels), not by the registered sha256: an equally genuine copy can be
      # gzipped with another wrapper (the MNIST copy this project tests on is one),
      # and then its .gz bytes differ from the public mirrors' though the IDX
      # contents are the same. Raw, uncompressed files are accepted for that reason too.
      logging.info("Preparing %s from the IDX files in %s.", self.name, folder)
      paths = {key: data_lib.find_idx_file(folder, stem)
               for key, stem in data_lib.IDX_FILES.items()}
    else:
      logging.info("Downloading %s from %s (sizes and sha256 checked).", self.name, self.URL)
      paths = dl_manager.download(self.urls())
    arrays = {key: data_lib.read_idx(path) for key, path in paths.items()}
    return {split: self._generate_examples(*_checked_split(arrays, split, self.name))
            for split in ("train", "test")}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image[..., None], "label": int(label), "index": index}


class AejaxMnist(_IdxBuilder):
  """MNIST handwritten digits, prepared without TensorFlow."""
  name = "aejax_mnist"
  URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
  CHECKSUMS_NAME = "mnist"
  CLASS_NAMES = tuple(str(digit) for digit in range(NUM_CLASSES))
  DESCRIPTION = "The MNIST database of handwritten digits (LeCun, Cortes, Burges)."
  HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"


class AejaxFashionMnist(_IdxBuilder):
  """Fashion-MNIST (Zalando), prepared without TensorFlow."""
  name = "aejax_fashion_mnist"
  URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
  CHECKSUMS_NAME = "fashion_mnist"
  CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                 "Shirt", "Sneaker", "Bag", "Ankle boot")
  DESCRIPTION = "Fashion-MNIST: 28x28 grayscale images of Zalando's articles, 10 classes."
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"


class AejaxKmnist(_IdxBuilder):
  """Kuzushiji-MNIST, prepared without TensorFlow."""
  name = "aejax_kmnist"
  URL = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
  CHECKSUMS_NAME = "kmnist"
  CLASS_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
  DESCRIPTION = "Kuzushiji-MNIST: 28x28 grayscale cursive Japanese characters, 10 classes."
  HOMEPAGE = "http://codh.rois.ac.jp/kmnist/index.html.en"


# aejax's dataset name -> its builder.
BUILDERS: dict[str, type[_IdxBuilder]] = {
    "mnist": AejaxMnist, "fashion_mnist": AejaxFashionMnist, "kmnist": AejaxKmnist}


def _manual_folder(dl_manager) -> pathlib.Path | None:
  """The manual folder when it holds all four IDX files; None means download."""
  try:
    folder = pathlib.Path(dl_manager.manual_dir)
  except AssertionError:  # no manual folder given, or TFDS's default one is empty
    return None
  if all(data_lib.find_idx_file(folder, stem) for stem in data_lib.IDX_FILES.values()):
    return folder
  return None


def _checked_split(arrays: dict[str, np.ndarray], split: str,
                   name: str) -> tuple[np.ndarray, np.ndarray]:
  """``images uint8 [N, 28, 28]``, ``labels uint8 [N]`` of one split, or DataError."""
  images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
  if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE[:2]:
    raise data_lib.DataError(f"{name}: {split} images are {images.dtype} {images.shape}; "
                             f"the MNIST family is uint8 [N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}].")
  if labels.ndim != 1 or len(labels) != len(images):
    raise data_lib.DataError(f"{name}: {len(images)} {split} images but labels of "
                             f"shape {labels.shape}.")
  if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise data_lib.DataError(f"{name}: {split} labels must lie in [0, {NUM_CLASSES}), "
                             f"found [{labels.min()}, {labels.max()}].")
  if len(images) != CANONICAL_COUNTS[split]:
    logging.warning("%s: %d %s images where the published set has %d; preparing them "
                    "as they are.", name, len(images), split, CANONICAL_COUNTS[split])
  return images, labels.astype(np.uint8)


# -------------------------------------------------------------- prepare and read


def prepared_dir(name: str, data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Where the prepared ``name`` lives: ``<data_dir>/aejax_<name>/<version>``."""
  builder_cls = BUILDERS[name]
  return (pathlib.Path(data_dir or default_data_dir()).expanduser()
          / builder_cls.name / str(builder_cls.VERSION))


def prepare(name: str, *, data_dir: str | os.PathLike | None = None,
            manual_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Prepares ``name`` as array_record in ``data_dir`` and returns its folder.

  From ``manual_dir`` when given (a folder of the four IDX files; anything missing
  or malformed in it is a DataError, never a download), else by downloading the
  canonical files with their registered checksums. A prepared dataset is kept as
  it is.
  """
  if name not in BUILDERS:
    raise ValueError(f"No TensorFlow-free builder for {name!r}; choose one of {list(BUILDERS)}.")
  if manual_dir is not None:
    manual_dir = pathlib.Path(manual_dir).expanduser().resolve()
    if not manual_dir.is_dir():
      raise data_lib.DataError(f"Manual folder {manual_dir} does not exist.")
    missing = [stem + "[.gz]" for stem in data_lib.IDX_FILES.values()
               if data_lib.find_idx_file(manual_dir, stem) is None]
    if missing:
      raise data_lib.DataError(f"Manual folder {manual_dir} lacks {', '.join(missing)}.")
  data_dir = pathlib.Path(data_dir or default_data_dir()).expanduser()
  builder = BUILDERS[name](data_dir=str(data_dir), file_format="array_record")
  download_config = tfds.download.DownloadConfig(
      manual_dir=None if manual_dir is None else str(manual_dir),
      # A URL without a registered checksum is refused rather than trusted.
      force_checksums_validation=True)
  builder.download_and_prepare(download_config=download_config)
  return prepared_dir(name, data_dir)


def split_sizes(folder: str | os.PathLike) -> dict[str, int]:
  """Examples per split of the dataset prepared in ``folder``, from its metadata."""
  info = tfds.builder_from_directory(str(folder)).info
  return {split: info.splits[split].num_examples for split in info.splits}


def read_prepared(name: str, data_dir: str | os.PathLike | None = None) -> data_lib.Dataset:
  """Reads a prepared dataset into uint8 arrays, with no TensorFlow.

  Through the builder's data source (what ``tfds.data_source`` returns), which
  needs only the files, not this module's builder classes. Examples come back in
  the source files' order (by their stored 'index'), so a run draws the same
  batches from a prepared copy as from the IDX files.
  """
  folder = prepared_dir(name, data_dir)
  builder = tfds.builder_from_directory(str(folder))
  sources = builder.as_data_source()
  arrays = {}
  for split in ("train", "test"):
    source = sources[split]
    records = source.__getitems__(list(range(len(source))))
    records.sort(key=lambda r: int(r["index"]))
    arrays[f"{split}_images"] = np.stack([r["image"] for r in records], dtype=np.uint8)
    arrays[f"{split}_labels"] = np.array([r["label"] for r in records], data_lib.LABEL_DTYPE)
  return data_lib.Dataset(name=name, source="tfds", location=str(folder), **arrays)


def load_prepared(name: str) -> data_lib.Dataset | None:
  """``name`` from TFDS's data dir if it is prepared there, else None."""
  if name not in BUILDERS or not (prepared_dir(name) / "dataset_info.json").is_file():
    return None
  return read_prepared(name)
