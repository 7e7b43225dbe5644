"""Shared test fixtures: the full-MNIST folder (optional) and small configs."""

import os
import pathlib

import pytest

# Tests must not grab every core or preallocate accelerator memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Full MNIST for the tests that need it: $AEJAX_TEST_MNIST_DIR, else $AEJAX_DATA_DIR
# (the folder runs train on), else a shared/data/mnist folder beside the project.
MNIST_DIR = pathlib.Path(os.environ.get("AEJAX_TEST_MNIST_DIR") or os.environ.get(
    "AEJAX_DATA_DIR") or ROOT.parent / "shared" / "data" / "mnist")


@pytest.fixture
def mnist_dir() -> pathlib.Path:
  if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
    pytest.skip(f"full MNIST not found at {MNIST_DIR} (set AEJAX_DATA_DIR to the folder "
                "of its four IDX files)")
  return MNIST_DIR


@pytest.fixture(autouse=True)
def isolated_tfds_data_dir(tmp_path_factory, monkeypatch):
  """No test reads or writes data someone prepared in ~/tensorflow_datasets."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path_factory.mktemp("tfds_data_dir")))
