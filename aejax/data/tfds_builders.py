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

CIFAR-10 and CIFAR-100 take only TFDS's download manager and registered checksums
(``download_cifar``): the tarball of binary records is unpacked into
``$TFDS_DATA_DIR/aejax_cifar/`` and read by ``aejax.data.readers``.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import socket
import tarfile
import threading
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.core.utils import py_utils

from aejax.data import core as data_lib, readers

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Both the MNIST-family releases and the bundled checks assume these split sizes.
CANONICAL_COUNTS = {"train": 60_000, "test": 10_000}
# Network reachability is decided within this many seconds, DNS lookup included,
# so that an offline machine falls back at once instead of letting TFDS's download
# retry for minutes.
REACHABILITY_TIMEOUT_S = 2.0
TENSORFLOW_HINT = 'pip install "aejax[tensorflow]"'


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


# ------------------------------------------- the TFDS catalog, without TensorFlow


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


def network_reachable(url: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> bool:
  """Whether a TCP connection to ``url``'s host opens within ``timeout_s`` seconds.

  The DNS lookup has no timeout of its own, so the whole attempt runs in a daemon
  thread that is abandoned, not waited for, once the time is up.
  """
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (443 if parts.scheme == "https" else 80)
  outcome = []

  def connect():
    try:
      with socket.create_connection((parts.hostname, port), timeout=timeout_s):
        outcome.append(True)
    except OSError:
      outcome.append(False)

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout_s)
  return bool(outcome and outcome[0])


def download_and_load(name: str) -> data_lib.Dataset | None:
  """Downloads and prepares ``name`` when its host is reachable; None when offline."""
  url = BUILDERS[name].URL
  if not network_reachable(url):
    logging.warning("Offline: %s cannot be reached within %.0f s, so %s is not "
                    "downloaded.", urllib.parse.urlsplit(url).hostname,
                    REACHABILITY_TIMEOUT_S, name)
    return None
  try:
    prepare(name)
  except data_lib.DataError:
    raise
  except Exception as e:  # TFDS raises many kinds: network, checksum, disk
    raise _download_failed(
        name, e, "Prepare it from local IDX files instead: python -m experiments."
        f"prepare_data --dataset={name} --manual_dir=<folder>.") from e
  return read_prepared(name)


def _download_failed(name: str, error: Exception, instead: str) -> data_lib.DataError:
  """The one-line error of a download through TFDS that failed, and what to do."""
  return data_lib.DataError(f"Downloading {name} through tensorflow-datasets failed "
                            f"({type(error).__name__}: {error}). {instead}")


# ------------------------------------- CIFAR's binary files, through TFDS's download

# Below TFDS's data dir: <data dir>/aejax_cifar/cifar-10-batches-bin (or
# cifar-100-binary), unpacked from the tarball TFDS's download manager fetched.
CIFAR_FOLDER = "aejax_cifar"


def cifar_download_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Where a downloaded CIFAR binary distribution is unpacked."""
  return pathlib.Path(data_dir or default_data_dir()).expanduser() / CIFAR_FOLDER


def load_cifar_downloaded(name: str) -> data_lib.Dataset | None:
  """``name`` ('cifar10' or 'cifar100') from an earlier download unpacked in TFDS's
  data dir, else None. Read with no network: the unpacked files are the source."""
  folder = cifar_download_dir() / readers.CIFAR[name][0]
  if not folder.is_dir():
    return None
  return readers.read_cifar(folder, name)


def download_cifar(name: str) -> data_lib.Dataset | None:
  """Downloads ``name``'s binary tarball through TFDS's download manager when its host
  answers within seconds, its size and sha256 checked against those the installed
  tensorflow_datasets registers for its own ``cifar10`` / ``cifar100`` builders, and
  unpacks it into TFDS's data dir; None when offline.

  Only the download manager and the registered checksums are TFDS's: its builders
  parse these files with ``tf.io.gfile`` and need TensorFlow, so the files are read
  with ``readers.read_cifar`` instead, as from a ``data_dir``.
  """
  url = readers.CIFAR_URLS[name]
  if not network_reachable(url):
    return None
  checksums = tfds.core.utils.tfds_path() / "url_checksums" / f"{name}.txt"
  manager = tfds.download.DownloadManager(
      download_dir=str(default_data_dir() / "downloads"),
      url_infos=tfds.core.download.checksums.load_url_infos(checksums),
      force_checksums_validation=True)
  target = cifar_download_dir()
  target.mkdir(parents=True, exist_ok=True)
  try:
    tarball = pathlib.Path(str(manager.download(url)))
    partial = target / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarball) as archive:
      archive.extractall(partial, filter="data")  # no absolute paths, no links out
    # Renamed into place once whole: a download cut off midway is never read as data.
    (partial / readers.CIFAR[name][0]).rename(target / readers.CIFAR[name][0])
    shutil.rmtree(partial)
  except Exception as e:  # TFDS raises many kinds: network, checksum, disk
    raise _download_failed(
        name, e, f"Download and unpack {url} yourself and pass --config.data_dir=<the "
        f"folder holding {readers.CIFAR[name][0]}>.") from e
  return load_cifar_downloaded(name)


# ------------------------------------------------- other TFDS datasets, with TF


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
    if not network_reachable("https://storage.googleapis.com/"):
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
