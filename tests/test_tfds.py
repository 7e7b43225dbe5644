"""The MNIST family through tensorflow-datasets without TensorFlow: prepare, read, order.

Nothing here reaches outside this machine: downloads are served from localhost, and
the offline case uses a host under the reserved '.invalid' domain, whose DNS lookup
fails at once.
"""

import gzip
import hashlib
import http.server
import importlib.util
import json
import pathlib
import socket
import struct
import sys
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aejax import config as config_lib
from aejax import data, engine
from aejax.data import downloads, tfds_builders
from experiments.configs import base

UNREACHABLE_URL = "http://aejax-test.invalid/"


def write_idx(path: pathlib.Path, array: np.ndarray, compress: bool = True) -> None:
  raw = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_folder(folder: pathlib.Path, n_train: int = 300, n_test: int = 50,
                    seed: int = 0, compress: bool = True, image_shape=(28, 28),
                    num_classes: int = 10) -> dict[str, np.ndarray]:
  """Four random IDX files of the MNIST family's shape; returns what they hold."""
  rng = np.random.default_rng(seed)
  arrays = {"train_images": rng.integers(0, 256, (n_train, *image_shape), np.uint8),
            "train_labels": rng.integers(0, num_classes, n_train, np.uint8),
            "test_images": rng.integers(0, 256, (n_test, *image_shape), np.uint8),
            "test_labels": rng.integers(0, num_classes, n_test, np.uint8)}
  folder.mkdir(parents=True, exist_ok=True)
  for key, array in arrays.items():
    write_idx(folder / (data.IDX_FILES[key] + (".gz" if compress else "")), array, compress)
  return arrays


def assert_same_examples(ds: data.Dataset, expected: dict[str, np.ndarray]) -> None:
  """The same images and labels in the same order as the IDX files."""
  for split in ("train", "test"):
    images, labels = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
    want_images = expected[f"{split}_images"]
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert images.shape == (*want_images.shape[:3], 1) and labels.shape == (len(want_images),)
    np.testing.assert_array_equal(images[..., 0], want_images)
    np.testing.assert_array_equal(labels, expected[f"{split}_labels"])


@pytest.fixture
def tfds_dir(tmp_path, monkeypatch) -> pathlib.Path:
  """An empty TFDS data dir, and no IDX folder from the environment."""
  folder = tmp_path / "tensorflow_datasets"
  monkeypatch.setenv("TFDS_DATA_DIR", str(folder))
  monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
  return folder


def test_full_mnist_prepares_and_reads_back_without_tensorflow(mnist_dir, tfds_dir):
  folder = tfds_builders.prepare("mnist", manual_dir=mnist_dir)
  assert folder == tfds_dir / "aejax_mnist" / "1.1.0"
  assert tfds_builders.split_sizes(folder) == {"train": 60000, "test": 10000}
  ds = tfds_builders.load_prepared("mnist")
  assert "tensorflow" not in sys.modules
  assert (ds.name, ds.source, ds.location) == ("mnist", "tfds", str(folder))
  idx = data.read_idx_folder(mnist_dir)
  assert_same_examples(ds, {k: getattr(idx, k)[..., 0] if k.endswith("images") else getattr(idx, k)
                            for k in data.IDX_FILES})


@pytest.mark.parametrize("name, compress", [("mnist", True), ("fashion_mnist", False),
                                            ("kmnist", True)])
def test_synthetic_idx_files_round_trip(name, compress, tfds_dir, tmp_path):
  arrays = make_idx_folder(tmp_path / "idx", compress=compress)
  folder = tfds_builders.prepare(name, manual_dir=tmp_path / "idx")
  assert folder.parent.name == f"aejax_{name}"
  config = base.get_config()
  config.dataset = name
  config_lib.validate(config)
  ds = data.load(config)
  assert "tensorflow" not in sys.modules
  assert (ds.name, ds.source, ds.location) == (name, "tfds", str(folder))
  assert ds.image_shape == (28, 28, 1)
  assert_same_examples(ds, arrays)
  # tfds's own entry point reads the same files, with the label names of each set.
  source = tfds.data_source(f"aejax_{name}", split="test", data_dir=tfds_dir, download=False)
  assert len(source) == 50 and source[0]["image"].shape == (28, 28, 1)
  names = tfds.builder_from_directory(str(folder)).info.features["label"].names
  assert names[-1] == {"mnist": "9", "fashion_mnist": "Ankle boot", "kmnist": "wo"}[name]


def test_malformed_manual_folders_are_refused(tfds_dir, tmp_path):
  with pytest.raises(data.DataError, match="does not exist"):
    tfds_builders.prepare("mnist", manual_dir=tmp_path / "nowhere")
  make_idx_folder(tmp_path / "partial")
  (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
  with pytest.raises(data.DataError, match="lacks t10k-labels-idx1-ubyte"):
    tfds_builders.prepare("mnist", manual_dir=tmp_path / "partial")

  make_idx_folder(tmp_path / "big", image_shape=(32, 32))
  with pytest.raises(data.DataError, match=r"uint8 \[N, 28, 28\]"):
    tfds_builders.prepare("mnist", manual_dir=tmp_path / "big")
  make_idx_folder(tmp_path / "labels", num_classes=12, n_train=400)
  with pytest.raises(data.DataError, match=r"labels must lie in \[0, 10\)"):
    tfds_builders.prepare("fashion_mnist", manual_dir=tmp_path / "labels")
  make_idx_folder(tmp_path / "cut")
  path = tmp_path / "cut" / "train-images-idx3-ubyte.gz"
  path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-28]))
  with pytest.raises(data.DataError, match="truncated or corrupt"):
    tfds_builders.prepare("mnist", manual_dir=tmp_path / "cut")
  assert not tfds_builders.prepared_dir("mnist").exists()  # nothing half-made is left to read


def test_the_canonical_checksums_are_the_installed_tfds_ones():
  for name, builder in tfds_builders.BUILDERS.items():
    infos = builder.url_infos
    assert set(builder.urls().values()) <= set(infos), name
  mnist = tfds_builders.AejaxMnist.url_infos[tfds_builders.AejaxMnist.urls()["train_images"]]
  assert mnist.size == 9912422
  assert mnist.checksum == "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"


@pytest.fixture
def local_server(tmp_path):
  """Serves tmp_path/'served' on localhost; yields (folder, base URL)."""
  folder = tmp_path / "served"
  folder.mkdir()
  handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
  server.shutdown()
  server.server_close()


def test_download_checks_each_file_against_its_registered_checksum(
    local_server, tfds_dir, monkeypatch):
  served, url = local_server
  arrays = make_idx_folder(served, seed=1)
  infos = {}
  for stem in data.IDX_FILES.values():
    raw = (served / f"{stem}.gz").read_bytes()
    infos[url + stem + ".gz"] = tfds.core.download.checksums.UrlInfo(
        size=len(raw), checksum=hashlib.sha256(raw).hexdigest(), filename=f"{stem}.gz")

  class LocalFashionMnist(tfds_builders.AejaxFashionMnist, skip_registration=True):
    URL = url
    url_infos = infos

  monkeypatch.setitem(tfds_builders.BUILDERS, "fashion_mnist", LocalFashionMnist)
  ds = downloads.download_and_load("fashion_mnist")
  assert ds.source == "tfds" and ds.name == "fashion_mnist"
  assert_same_examples(ds, arrays)

  # A file that differs from what is registered is refused, not prepared.
  make_idx_folder(served, seed=2)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir.parent / "other"))
  with pytest.raises(data.DataError, match="NonMatchingChecksumError"):
    downloads.download_and_load("fashion_mnist")


def test_reachability_is_decided_quickly(monkeypatch):
  assert not downloads.network_reachable(UNREACHABLE_URL)
  with socket.socket() as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    assert downloads.network_reachable(f"http://127.0.0.1:{listener.getsockname()[1]}/")
  # A connection that hangs (a firewall dropping packets) counts as unreachable
  # once the timeout passes, however long the hung call would go on.
  release = threading.Event()

  def hanging_connection(*args, **kwargs):
    release.wait(60)
    raise OSError("released by the test")

  monkeypatch.setattr(socket, "create_connection", hanging_connection)
  try:
    assert not downloads.network_reachable("http://example.test/", timeout_s=0.2)
  finally:
    release.set()


def test_offline_with_no_local_data_falls_back_to_the_sample(tfds_dir, monkeypatch, caplog):
  monkeypatch.setattr(tfds_builders.AejaxMnist, "URL", UNREACHABLE_URL)
  monkeypatch.setattr(tfds_builders.AejaxKmnist, "URL", UNREACHABLE_URL)

  def no_prepare(*args, **kwargs):
    raise AssertionError("nothing may be downloaded or prepared offline")

  monkeypatch.setattr(tfds_builders, "prepare", no_prepare)
  config = base.get_config()
  ds = data.load(config)
  assert ds.source == "bundled_sample"
  assert "Offline" in caplog.text and "FULL MNIST NOT FOUND" in caplog.text
  config.dataset = "kmnist"  # no sample of it: an error that says how to get it
  with pytest.raises(data.DataError, match="prepare_data --dataset=kmnist --manual_dir"):
    data.load(config)


def test_a_named_folder_wins_over_a_prepared_copy_which_wins_over_the_rest(tfds_dir, tmp_path,
                                                                           monkeypatch):
  """An explicitly named IDX folder is used even when TFDS's data dir holds a (here
  smaller, different) prepared copy; a missing named folder is an error, never a
  fallback."""
  tfds_arrays = make_idx_folder(tmp_path / "for_tfds", seed=3)
  tfds_builders.prepare("mnist", manual_dir=tmp_path / "for_tfds")
  idx_arrays = make_idx_folder(tmp_path / "idx", seed=4)
  config = base.get_config()
  monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
  ds = data.load(config)  # nothing named: the prepared copy
  assert ds.source == "tfds"
  assert_same_examples(ds, tfds_arrays)
  config.data_dir = str(tmp_path / "idx")
  ds = data.load(config)
  assert ds.source == "idx" and ds.location == str(tmp_path / "idx")
  assert_same_examples(ds, idx_arrays)
  config.data_dir = ""
  monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "idx"))
  assert data.load(config).source == "idx"
  config.data_dir = str(tmp_path / "missing")
  with pytest.raises(data.DataError, match="does not exist"):
    data.load(config)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed here")
def test_tfds_catalog_names_without_tensorflow_say_which_extra_to_install():
  """A name may be prepared as array_record (read without TensorFlow), so only
  loading says, in one line, what is missing."""
  config = base.get_config()
  config.dataset = "tfds:cifar10"
  config_lib.validate(config)
  with pytest.raises(data.DataError, match=r'not prepared in array_record format .* '
                     r'pip install "aejax\[tensorflow\]"') as info:
    data.load(config)
  assert "\n" not in str(info.value)
  config.dataset = "tfds:"
  with pytest.raises(ValueError, match="names no name: use tfds:<name>"):
    config_lib.validate(config)


class PngImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A catalog-style builder: an Image feature (PNG) and a ClassLabel. It hands TFDS
  encoded PNG bytes, which TFDS stores without TensorFlow (NumPy arrays it would
  encode with TensorFlow)."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3)),
        "label": tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(12), "test": self._generate_examples(4)}

  def _generate_examples(self, n):
    import io
    from PIL import Image
    for i, image in enumerate(catalog_images(n)):
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, format="png")
      yield i, {"image": buffer.getvalue(), "label": i % 3}


def catalog_images(n):
  return np.random.default_rng(n).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def test_a_catalog_dataset_prepared_as_array_record_reads_without_tensorflow():
  PngImages(data_dir=str(tfds_builders.default_data_dir()),
            file_format="array_record").download_and_prepare()
  config = base.get_config()
  config.dataset = "tfds:png_images"
  ds = data.load(config)
  assert (ds.source, ds.image_shape, ds.n_train, len(ds.test_images)) == (
      "tfds_array_record", (8, 8, 3), 12, 4)
  # TFDS stores records in an order of its own: the same images and labels, as a set.
  expected = {(bytes(x), i % 3) for i, x in enumerate(catalog_images(12))}
  assert {(bytes(x), int(y)) for x, y in zip(ds.train_images, ds.train_labels)} == expected
  assert ds.fingerprint == data.load(config).fingerprint


def test_tfds_catalog_names_with_tensorflow_give_uint8_arrays(tfds_dir, monkeypatch):
  pytest.importorskip("tensorflow", reason='needs TensorFlow: pip install "aejax[tensorflow]"')
  from tensorflow_datasets import testing as tfds_testing
  # TFDS's own mock stands in for cifar10's download: random examples of its features.
  monkeypatch.setattr(downloads, "network_reachable", lambda url, timeout_s=0: True)
  config = base.get_config()
  config.dataset = "tfds:cifar10"
  config_lib.validate(config)
  with tfds_testing.mock_data(num_examples=12, policy=tfds_testing.MockPolicy.USE_CODE):
    ds = data.load(config)
  assert (ds.name, ds.source, ds.image_shape) == ("tfds:cifar10", "tfds", (32, 32, 3))
  assert ds.train_images.shape == (12, 32, 32, 3) and ds.test_labels.shape == (12,)
  assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32


@pytest.mark.slow
def test_cli_prepares_then_trains_on_tfds_data(tmp_path, cli):
  name = "mnist"
  tfds_dir = tmp_path / "tensorflow_datasets"
  make_idx_folder(tmp_path / "idx", n_train=256, n_test=64)
  env = {"TFDS_DATA_DIR": str(tfds_dir)}
  prepare = cli.run_module("experiments.prepare_data", f"--dataset={name}",
                           f"--manual_dir={tmp_path / 'idx'}", env=env, timeout=300)
  assert f"{name}: 256 train and 64 test images prepared in" in prepare.stdout
  workdir = tmp_path / "run"
  cli.run(workdir, "--config=experiments/configs/vanilla.py", f"--config.dataset={name}",
          "--config.num_epochs=1", "--config.batch_size=64", env=env, timeout=300)
  results = json.loads((workdir / "results.json").read_text())
  # The same images read from the IDX files have the same fingerprint.
  fingerprint = data.read_idx_folder(tmp_path / "idx").fingerprint
  assert results["dataset"] == {
      "name": name, "source": "tfds", "n_train": 256, "n_test": 64, "image_shape": [28, 28, 1],
      "location": str(tfds_dir / f"aejax_{name}" / "1.1.0"), "fingerprint": fingerprint}
  assert np.isfinite(results["test"]["mse"])
