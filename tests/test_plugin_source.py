"""A data source added in one file, with no edit anywhere else: this file registers a
source that reads images from a CSV file (``csv:<file>``: one row per image, its split,
its label, then its pixels). It is also the experiment config that trains on it through the command line:

    python -m experiments.main --config tests/test_plugin_source.py --workdir <dir> \
        --config.dataset=csv:path/to/images.csv
"""

import json

import numpy as np
import pytest

from aejax import data
from aejax.data import sources
from experiments.configs import base


def read_csv(path: str, config) -> data.Dataset:
  """Rows ``split (0 train, 1 test), label, 784 pixels`` as 28 x 28 grey images."""
  try:
    rows = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
  except OSError as e:
    raise data.DataError(f"{path} cannot be read ({e}).") from None
  if rows.shape[1] != 2 + 28 * 28:
    raise data.DataError(f"{path}: rows hold {rows.shape[1]} values, not 2 + 784.")
  split = lambda s: rows[rows[:, 0] == s]
  images = lambda r: r[:, 2:].reshape(-1, 28, 28, 1).astype(np.uint8)
  return data.Dataset(name=config.dataset, source="csv", location=path,
                      train_images=images(split(0)), train_labels=split(0)[:, 1].astype(np.uint8),
                      test_images=images(split(1)), test_labels=split(1)[:, 1].astype(np.uint8))


def check_csv(path: str) -> None:
  if not path.endswith(".csv"):
    raise ValueError(f"config.dataset='csv:{path}' must name a .csv file.")


sources.register(sources.Source(
    "csv", read_csv, prefix=True, argument="<file.csv>", check=check_csv,
    summary="rows of split, label and 784 pixels"))


def get_config():
  config = base.get_config()
  config.name = "csv"
  config.num_epochs, config.batch_size = 1, 100
  return config


def write_csv(path, n_train: int = 300, n_test: int = 100) -> data.Dataset:
  """The bundled sample's first images, as ``csv:<path>`` reads them."""
  sample = data.load_sample()
  rows = [np.column_stack([np.full(n, s), labels[:n], images[:n].reshape(n, -1)])
          for s, (images, labels, n) in enumerate((
              (sample.train_images, sample.train_labels, n_train),
              (sample.test_images, sample.test_labels, n_test)))]
  np.savetxt(path, np.concatenate(rows), fmt="%d", delimiter=",")
  return sample


def test_the_registered_source_serves_names_and_errors(tmp_path):
  sample = write_csv(tmp_path / "images.csv")
  config = get_config()
  config.dataset = f"csv:{tmp_path / 'images.csv'}"
  ds = data.load(config)
  np.testing.assert_array_equal(ds.train_images, sample.train_images[:300])
  assert "csv:<file.csv>" in sources.table()
  for name, match in (("csv:", "names no file.csv"), ("csv:images.txt", "must name a .csv"),
                      ("csvs:x", r"choose one of \[.*'csv:<file.csv>'")):
    with pytest.raises(ValueError, match=match):
      data.validate_dataset_name(name)


@pytest.mark.slow
def test_a_source_registered_in_one_file_trains_through_the_cli(tmp_path, cli):
  write_csv(tmp_path / "images.csv")
  results = {}
  for mode in ("device", "stream"):
    cli.run(tmp_path / mode, f"--config={__file__}",
            f"--config.dataset=csv:{tmp_path / 'images.csv'}", f"--config.input={mode}",
            env={"TFDS_DATA_DIR": str(tmp_path / "tfds")})
    results[mode] = json.loads((tmp_path / mode / "results.json").read_text())
  dataset = results["device"]["dataset"]
  assert (dataset["source"], dataset["n_train"], dataset["n_test"]) == ("csv", 300, 100)
  # Streamed, the source's train split was written once as array_record and read back.
  assert list((tmp_path / "tfds" / "aejax_stream").iterdir())
  assert results["stream"]["test"] == results["device"]["test"]
