"""``npy:<folder>``: float vectors in ``.npy`` shards, read in place and never whole in
memory; the train split's statistics measured in one pass and kept; every bad shard
one line naming it; a TopK autoencoder streamed from the shards trains as from the
same rows in an npz file.
"""

import concurrent.futures
import json
import logging
import pathlib
import time

import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from aejax import data, trainer
from aejax.data import core, readers, rows, shards
from experiments.configs import topk

RNG = np.random.default_rng(0)


def vectors(n, d=16, dtype=np.float32):
  """Float features with a scale and an offset far from [0, 1]."""
  return (RNG.standard_normal((n, d)) * 3 + 5).astype(dtype)


def write_shards(folder: pathlib.Path, arrays) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  for i, array in enumerate(arrays):
    np.save(folder / f"shard{i:02d}.npy", array)
  return folder


def config(folder, root, standardize=False, test_fraction=0.1):
  return ml_collections.ConfigDict(dict(
      dataset=f"npy:{folder}", standardize=standardize, test_fraction=test_fraction,
      prepared_dir=str(root)))


def one_line_error(match, fn, *args):
  with pytest.raises(data.DataError, match=match) as info:
    fn(*args)
  assert "\n" not in str(info.value)
  return str(info.value)


# ----------------------------------------------------------------- the pieces


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
  """``on_disk(arrays)``: a ``rows.Shards`` of ``arrays`` saved as fresh ``.npy`` files."""
  folder, made = tmp_path_factory.mktemp("parts"), [0]

  def save(arrays):
    parts = []
    for array in arrays:
      made[0] += 1
      np.save(folder / f"{made[0]}.npy", array)
      parts.append(rows.Rows(folder / f"{made[0]}.npy"))
    return rows.Shards(parts)

  return save


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=5), st.integers(1, 6),
       st.integers(1, 17), st.floats(-1e4, 1e4), st.integers(0, 2**31))
def test_one_pass_mean_and_std_are_numpys_on_the_concatenated_rows(on_disk, lengths, d,
                                                                    pieces, offset, seed):
  """Chan's merge of pieces of any size against NumPy's two-pass float64 moments, for
  rows whose offset dwarfs their spread (where a running sum of squares cancels)."""
  rng = np.random.default_rng(seed)
  parts = [(rng.standard_normal((n, d)) + offset).astype(np.float32) for n in lengths]
  whole = np.concatenate(parts)
  view = shards.Vectors(on_disk(parts))
  stats = shards.measure({"train": view, "test": view}, pieces=pieces)
  np.testing.assert_allclose(stats["mean"], whole.mean(0, dtype=np.float64), rtol=1e-12,
                             atol=1e-12)
  std = whole.std(0, dtype=np.float64)
  np.testing.assert_allclose(stats["std"], np.where(std > 0, std, 1), rtol=1e-9, atol=1e-9)
  assert stats["fingerprint"] == core.fingerprint_of(
      (whole, np.zeros(len(whole), np.uint8), whole, np.zeros(len(whole), np.uint8)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=4), st.integers(2, 7),
       st.sampled_from(["train", "test", "all"]), st.data())
def test_the_held_out_view_is_numpy_indexing(on_disk, lengths, every, part, draw):
  """Every view's rows, ``take``, slices, pieces and ``np.asarray`` are those NumPy
  indexing of the concatenated shards gives."""
  d = 3
  parts = [np.arange(n * d, dtype=np.float64).reshape(n, d) + 1000 * i
           for i, n in enumerate(lengths)]
  whole = np.concatenate(parts)
  if part != "all" and len(whole) < every:
    return
  held = np.arange(len(whole)) % every == every - 1
  expected = {"train": whole[~held], "test": whole[held], "all": whole}[part]
  view = shards.Vectors(on_disk(parts), 0 if part == "all" else every,
                        "train" if part == "all" else part)
  assert view.shape == expected.shape and len(view) == len(expected)
  np.testing.assert_array_equal(np.asarray(view), expected.astype(np.float32))
  assert view.dtype == np.float32 and np.asarray(view).dtype == np.float32
  if len(expected):
    indices = np.asarray(draw.draw(st.lists(st.integers(-len(expected), len(expected) - 1),
                                            max_size=20)), np.int64)
    np.testing.assert_array_equal(view.take(indices), expected[indices])
    np.testing.assert_array_equal(view[indices], expected[indices])
    start, stop = sorted(draw.draw(st.lists(st.integers(0, len(expected)), min_size=2,
                                            max_size=2)))
    np.testing.assert_array_equal(view[start:stop], expected[start:stop])
    np.testing.assert_array_equal(view[-1], expected[-1])
    pieces = [view[a:b] for a, b in view.blocks(draw.draw(st.integers(1, 9)))]
    np.testing.assert_array_equal(np.concatenate(pieces), expected)
    with pytest.raises(IndexError):
      view.take([len(expected)])


# --------------------------------------------------------------- the source


def test_shards_split_standardize_and_the_kept_statistics(tmp_path, caplog):
  """Every 10th row held out; the statistics measured once, then read back; a changed
  shard measured again. Standardised rows are readers.standardize's."""
  caplog.set_level(logging.INFO, logger="absl")  # whatever verbosity a test before set
  arrays = [vectors(200), vectors(150, dtype=np.float64), vectors(50, dtype=np.float64)]
  arrays[0] = arrays[0].astype(np.float64)
  folder = write_shards(tmp_path / "acts", arrays)
  whole = np.concatenate(arrays).astype(np.float32)
  held = np.arange(400) % 10 == 9
  ds = data.load(config(folder, tmp_path / "prep"))
  assert ds.source == "npy" and "Measuring npy:" in caplog.text
  assert isinstance(ds.train_images, shards.Vectors)  # on disk, not an array
  np.testing.assert_array_equal(np.asarray(ds.train_images), whole[~held])
  np.testing.assert_array_equal(np.asarray(ds.test_images), whole[held])
  assert ds.train_labels.dtype == np.int32 and not ds.train_labels.any()
  assert ds.details["stored_dtype"] == "float64" and ds.details["shards"] == 3
  assert ds.fingerprint == core.fingerprint_of(
      (whole[~held], ds.train_labels, whole[held], ds.test_labels))
  np.testing.assert_array_equal(ds.pixel_mean, core.mean_of(whole[~held]))
  assert [p.name for p in (tmp_path / "prep").iterdir() if p.suffix == ".json"] and not [
      p for p in (tmp_path / "prep").iterdir() if p.suffix == ".npy"]  # no copy
  caplog.clear()
  standardized = data.load(config(folder, tmp_path / "prep", standardize=True))
  assert "Read the statistics of npy:" in caplog.text and "Measuring" not in caplog.text
  train, test, mean, std = readers.standardize(whole[~held], whole[held])
  np.testing.assert_allclose(standardized.details["mean"], mean, rtol=1e-12)
  np.testing.assert_allclose(standardized.details["std"], std, rtol=1e-12)
  np.testing.assert_allclose(standardized.train_images.take([0, 5, 3]), train[[0, 5, 3]],
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(standardized.test_images), test, rtol=1e-6, atol=1e-6)
  assert standardized.fingerprint != ds.fingerprint and not standardized.bounded
  caplog.clear()
  np.save(folder / "shard01.npy", vectors(150, dtype=np.float64))  # another of its size
  again = data.load(config(folder, tmp_path / "prep"))
  assert "Measuring npy:" in caplog.text and "shards changed" in caplog.text
  assert again.fingerprint != ds.fingerprint


def test_two_loads_at_once_measure_once(tmp_path, monkeypatch):
  """Two loaders of one folder at once (threads: each opens the lock file itself, so
  flock keeps them apart as it does processes): one measures, the other waits for it
  and reads what it kept."""
  folder = write_shards(tmp_path / "acts", [vectors(40), vectors(40)])
  measure, calls = shards.measure, []

  def slow_measure(views, *args):
    calls.append(1)
    time.sleep(0.5)  # long enough for the other loader to reach the lock
    return measure(views, *args)

  monkeypatch.setattr(shards, "measure", slow_measure)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    loads = [pool.submit(data.load, config(folder, tmp_path / "prep")) for _ in range(2)]
    fingerprints = {f.result().fingerprint for f in loads}
  assert len(calls) == 1 and len(fingerprints) == 1
  assert not [p for p in (tmp_path / "prep").iterdir() if p.name.endswith(".tmp")]


def test_train_and_test_subfolders_and_bounded_vectors(tmp_path):
  train, test = RNG.random((30, 4), np.float32), RNG.random((10, 4), np.float32)
  write_shards(tmp_path / "f" / "train", [train[:12], train[12:]])
  write_shards(tmp_path / "f" / "test", [test])
  ds = data.load(config(tmp_path / "f", tmp_path / "prep"))
  np.testing.assert_array_equal(np.asarray(ds.train_images), train)
  np.testing.assert_array_equal(np.asarray(ds.test_images), test)
  assert ds.bounded and ds.details["split"] == "train/ and test/ subfolders"
  assert ds.fingerprint == readers.from_arrays(train, test).fingerprint


def test_every_bad_shard_is_one_line_naming_it(tmp_path):
  def load(folder):
    return data.load(config(folder, tmp_path / "prep"))

  one_line_error(r"npy folder \S*missing does not exist", load, tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  one_line_error(r"empty holds no \.npy shards", load, tmp_path / "empty")
  write_shards(tmp_path / "width", [vectors(20), vectors(20, d=8)])
  one_line_error(r"shard01\.npy holds vectors of width 8 but \S*shard00\.npy of width 16",
                 load, tmp_path / "width")
  bad = vectors(30)
  bad[17, 3] = np.nan
  write_shards(tmp_path / "nan", [vectors(40), bad])
  one_line_error(r"shard01\.npy: row 17 holds a non-finite value \(nan", load,
                 tmp_path / "nan")
  huge = vectors(30, dtype=np.float64)
  huge[4, 0] = 1e300  # beyond float32's range
  write_shards(tmp_path / "huge", [huge])
  one_line_error(r"shard00\.npy: row 4 holds a non-finite value \(1e\+300", load,
                 tmp_path / "huge")
  write_shards(tmp_path / "ints", [vectors(20), np.zeros((20, 16), np.int32)])
  one_line_error(r"shard01\.npy is int32 \[20, 16\]; a shard must be float \[N, D\]", load,
                 tmp_path / "ints")
  write_shards(tmp_path / "dtypes", [vectors(20), vectors(20, dtype=np.float16)])
  one_line_error(r"shard01\.npy is float16 but \S*shard00\.npy float32", load,
                 tmp_path / "dtypes")
  write_shards(tmp_path / "three_d", [vectors(20).reshape(20, 4, 4)])
  one_line_error(r"shard00\.npy is float32 \[20, 4, 4\]", load, tmp_path / "three_d")
  folder = write_shards(tmp_path / "cut", [vectors(20), vectors(20)])
  raw = (folder / "shard01.npy").read_bytes()
  (folder / "shard01.npy").write_bytes(raw[:-10])
  one_line_error(r"shard01\.npy holds \d+ bytes; its header says \d+: it is truncated",
                 load, folder)
  write_shards(tmp_path / "few", [vectors(5)])
  one_line_error(r"holds 5 rows; holding out every 10th", load, tmp_path / "few")


# ------------------------------------------------------------- through the CLI


def results(workdir: pathlib.Path) -> dict:
  return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def shard_runs(tmp_path_factory, cli):
  """3 shards of 200 x 16 and the same rows in an npz file, split alike; a TopK SAE
  trained 1 epoch streamed from each, raw and standardised."""
  root = tmp_path_factory.mktemp("shards")
  arrays = [vectors(200) for _ in range(3)]
  folder = write_shards(root / "acts", arrays)
  whole = np.concatenate(arrays)
  held = np.arange(len(whole)) % 10 == 9
  np.savez(root / "same.npz", train=whole[~held], test=whole[held])
  env = {"TFDS_DATA_DIR": str(root / "tfds")}
  common = ("--config=experiments/configs/topk.py", "--config.model.width=32",
            "--config.model.k=4", "--config.batch_size=32", "--config.num_epochs=1",
            "--config.input=stream")
  logs = {}
  for name, dataset, standardize in [("npy", f"npy:{folder}", False),
                                     ("npz", f"npz:{root / 'same.npz'}", False),
                                     ("npy_std", f"npy:{folder}", True),
                                     ("npz_std", f"npz:{root / 'same.npz'}", True)]:
    logs[name] = cli.run(root / name, *common, f"--config.dataset={dataset}",
                         f"--config.standardize={standardize}", env=env).stderr
  return root, logs


@pytest.mark.slow
def test_a_topk_sae_streams_from_shards_as_from_the_same_rows_in_npz(shard_runs):
  """Raw vectors: the same fingerprint and test metrics, bit for bit. Standardised:
  the npz copy's pixel mean (a TopK's initial ``b_pre``) is the float32 mean of its
  standardised rows, about 1e-9 where the one pass over the shards, which cannot read
  rows it has not yet standardised, takes their exact mean 0; so the metrics agree to
  float32 rounding, not bit for bit."""
  root, logs = shard_runs
  npy, npz = results(root / "npy"), results(root / "npz")
  assert npy["input"] == "stream" and npy["dataset"]["source"] == "npy"
  assert "Measuring npy:" in logs["npy"]
  assert f"Streaming the train set from {root / 'acts'}" in logs["npy"]
  assert npy["dataset"]["fingerprint"] == npz["dataset"]["fingerprint"]
  assert npy["test"] == npz["test"] and npy["steps"] == npz["steps"] == 540 // 32
  npy_std, npz_std = results(root / "npy_std"), results(root / "npz_std")
  # The second launch on the shards read the statistics the first one kept.
  assert "Read the statistics of npy:" in logs["npy_std"]
  assert "Measuring" not in logs["npy_std"]
  np.testing.assert_allclose(npy_std["dataset"]["mean"], npz_std["dataset"]["mean"],
                             rtol=1e-12)
  np.testing.assert_allclose(npy_std["dataset"]["std"], npz_std["dataset"]["std"],
                             rtol=1e-12)
  assert npy_std["test"].keys() == npz_std["test"].keys()
  for key, value in npz_std["test"].items():
    assert npy_std["test"][key] == pytest.approx(value, rel=1e-6), key


@pytest.mark.slow
def test_a_streamed_run_never_reads_the_train_split_whole(tmp_path, monkeypatch):
  """Training, evaluating and the code statistics over the train split read it a
  batch or a piece at a time: a ``Vectors`` train split asked for whole fails the run."""
  folder = write_shards(tmp_path / "acts", [vectors(200) for _ in range(3)])
  whole = shards.Vectors.__array__

  def refuse_train(view, *args, **kwargs):
    assert view.part == "test", "the train split was read whole"
    return whole(view, *args, **kwargs)

  monkeypatch.setattr(shards.Vectors, "__array__", refuse_train)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  run = topk.get_config()
  run.dataset, run.input, run.standardize = f"npy:{folder}", "stream", True
  run.num_epochs, run.batch_size, run.model.width, run.model.k = 1, 32, 32, 4
  trainer.train_and_evaluate(run, str(tmp_path / "run"))
  assert results(tmp_path / "run")["input"] == "stream"
