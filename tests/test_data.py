"""The IDX reader, the bundled sample, and the order in which data is found."""

import gzip
import hashlib
import json
import pathlib
import struct

import numpy as np
import pytest

from aejax import data
from experiments.configs import base

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def write_idx(path, array, compress=True):
  raw = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_folder(folder, n_train=20, n_test=10, shape=(28, 28), compress=True):
  rng = np.random.default_rng(0)
  suffix = ".gz" if compress else ""
  arrays = {"train_images": rng.integers(0, 256, (n_train, *shape)),
            "train_labels": rng.integers(0, 10, n_train),
            "test_images": rng.integers(0, 256, (n_test, *shape)),
            "test_labels": rng.integers(0, 10, n_test)}
  for key, array in arrays.items():
    write_idx(folder / (data.IDX_FILES[key] + suffix), array, compress)
  return arrays


def test_full_mnist_reads_with_its_known_counts(mnist_dir):
  ds = data.read_idx_folder(mnist_dir)
  assert ds.train_images.shape == (60000, 28, 28, 1) and ds.test_images.shape == (10000, 28, 28, 1)
  assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
  assert np.bincount(ds.train_labels).tolist() == TRAIN_COUNTS
  assert np.bincount(ds.test_labels).tolist() == TEST_COUNTS
  pixels = ds.train_images / 255.0
  assert abs(pixels.mean() - 0.13066) < 1e-4 and abs(pixels.std() - 0.30811) < 1e-4


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
  arrays = make_idx_folder(tmp_path, compress=compress)
  ds = data.read_idx_folder(tmp_path)
  np.testing.assert_array_equal(ds.train_images[..., 0], arrays["train_images"])
  np.testing.assert_array_equal(ds.test_labels, arrays["test_labels"])
  assert ds.source == "idx" and ds.image_shape == (28, 28, 1)


def test_missing_truncated_and_corrupt_files_say_what_to_do(tmp_path):
  make_idx_folder(tmp_path)
  (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
  with pytest.raises(data.DataError, match="lacks t10k-labels-idx1-ubyte"):
    data.read_idx_folder(tmp_path)
  with pytest.raises(data.DataError, match="does not exist"):
    data.read_idx_folder(tmp_path / "nowhere")

  path = tmp_path / "train-images-idx3-ubyte.gz"
  raw = gzip.decompress(path.read_bytes())
  path.write_bytes(gzip.compress(raw[:-100]))
  with pytest.raises(data.DataError, match="truncated or corrupt"):
    data.read_idx(path)
  path.write_bytes(path.read_bytes()[:50])  # a cut-off download
  with pytest.raises(data.DataError, match="corrupt or truncated"):
    data.read_idx(path)
  path.write_bytes(gzip.compress(b"\x01\x02\x08\x03" + raw[4:]))
  with pytest.raises(data.DataError, match="not an IDX file"):
    data.read_idx(path)


def test_bundled_sample_is_what_its_manifest_says():
  ds = data.load_sample()
  assert ds.train_images.shape == (6000, 28, 28, 1) and ds.test_images.shape == (1000, 28, 28, 1)
  assert np.bincount(ds.train_labels).tolist() == [600] * 10
  assert np.bincount(ds.test_labels).tolist() == [100] * 10
  manifest = json.loads((data.SAMPLE_DIR / "sample.json").read_text())
  for name, digest in manifest["files"].items():
    assert hashlib.sha256((data.SAMPLE_DIR / name).read_bytes()).hexdigest() == digest


# The sample's fingerprint when labels were stored as uint8; a checkpoint records the
# fingerprint of its data and a resumed run compares it, so it may never change.
SAMPLE_FINGERPRINT = "fa9c17f9c5cb77a565465423f2b960d1d375a745dc7d46d7fb0e6ff93bfac369"


def test_fingerprints_outlive_int32_labels():
  """Labels are int32 now; labels that fit in [0, 255] are hashed as the uint8 they
  were, so old data keeps its fingerprint, and more classes hash as int32."""
  sample = data.load_sample()
  assert sample.train_labels.dtype == np.int32
  assert sample.fingerprint == SAMPLE_FINGERPRINT
  images = np.zeros((2, 1, 1, 1), np.uint8)
  fingerprint = lambda labels: data.Dataset(
      name="x", source="x", location="x", train_images=images, train_labels=labels,
      test_images=images, test_labels=labels).fingerprint
  assert fingerprint(np.array([0, 255], np.uint8)) == fingerprint(np.array([0, 255], np.int32))
  assert fingerprint(np.array([0, 256])) != fingerprint(np.array([0, 0]))
  with pytest.raises(data.DataError, match=r"labels run from -1 to 0; labels are class "):
    fingerprint(np.array([-1, 0]))


def test_bundled_sample_is_a_subset_of_full_mnist(mnist_dir):
  full, sample = data.read_idx_folder(mnist_dir), data.load_sample()
  manifest = json.loads((data.SAMPLE_DIR / "sample.json").read_text())
  idx = np.array(manifest["indices"]["train"])
  np.testing.assert_array_equal(full.train_images[idx], sample.train_images)
  np.testing.assert_array_equal(full.test_labels[manifest["indices"]["test"]], sample.test_labels)


def test_load_order(tmp_path, monkeypatch, caplog):
  config = base.get_config()
  monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
  monkeypatch.setattr(data.shipped, "_try_tfds", lambda name: None)
  monkeypatch.setattr(data.shipped, "_try_tfds_download", lambda name: None)  # even online
  ds = data.load(config)  # nothing given: the sample, loudly
  assert ds.source == "bundled_sample" and "FULL MNIST NOT FOUND" in caplog.text

  make_idx_folder(tmp_path)
  monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path))
  assert data.load(config).source == "idx"
  config.data_dir = str(tmp_path / "missing")  # named explicitly: an error, no fallback
  with pytest.raises(data.DataError, match="does not exist"):
    data.load(config)
  config.dataset = "cifar"
  with pytest.raises(ValueError, match="config.dataset='cifar' is unknown"):
    data.load(config)


def test_docs_table_of_sources_is_the_registry():
  page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
  assert data.sources.table(shipped=True) in page, (
      "docs/data.md's table of sources differs from aejax.data.sources.table(shipped=True): "
      "paste that in its place.")
