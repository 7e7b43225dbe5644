"""aejax from Python: ``get_config``, ``train`` on arrays in memory, ``load``, and the
notebook of docs/python.md (the scikit-learn transformer: tests/test_sklearn.py).

Arrays train as the same data written to an npz file trains through the command
line, bit for bit; a resume with the same arrays continues, one with others is
refused. Every bad input is one exception of a public type, naming the key or the
array, before any compute, and leaves no workdir behind.
"""

import json
import os
import pickle
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import aejax
from aejax import data as data_lib, writers

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def sample():
  """A slice of the bundled MNIST sample: 640 train and 200 test images, labelled."""
  ds = data_lib.load_sample()
  return {"train": ds.train_images[:640], "test": ds.test_images[:200],
          "train_labels": ds.train_labels[:640], "test_labels": ds.test_labels[:200]}


def vanilla(**overrides):
  return aejax.get_config("vanilla", **{"model.code_size": 16, "num_epochs": 2, **overrides})


def test_arrays_train_as_their_npz_does_through_the_cli_and_resume_bit_for_bit(
    tmp_path, cli, sample):
  # A constant rate: one epoch and then a second follow the two epochs' schedule.
  constant = {"schedule": "constant", "warmup_epochs": 0.0}
  np.savez(tmp_path / "sample.npz", **sample)
  cli.run(tmp_path / "cli", "--config=experiments/configs/vanilla.py",
          f"--config.dataset=npz:{tmp_path / 'sample.npz'}", "--config.num_epochs=2",
          "--config.model.code_size=16", "--config.schedule=constant",
          "--config.warmup_epochs=0")
  by_cli = json.loads((tmp_path / "cli" / "results.json").read_text())
  trained = aejax.train(vanilla(**constant), tmp_path / "api", data=sample)
  assert trained.results["test"] == by_cli["test"]
  assert trained.results["dataset"]["fingerprint"] == by_cli["dataset"]["fingerprint"]
  assert trained.results["dataset"]["name"] == "arrays"
  assert [r["test"] for r in trained.history] == [
      json.loads(line)["test"] for line in (tmp_path / "cli" / "metrics.jsonl").open()]

  # One epoch, then a second with the same arrays (JAX arrays, this time): the
  # uninterrupted run's figures.
  aejax.train(vanilla(num_epochs=1, **constant), tmp_path / "resumed", data=sample)
  resumed = aejax.train(vanilla(**constant), tmp_path / "resumed",
                        data={k: jnp.asarray(v) for k, v in sample.items()})
  assert resumed.results["test"] == by_cli["test"]
  # Streamed, the same batches: the same figures.
  streamed = aejax.train(vanilla(input="stream", **constant), tmp_path / "streamed",
                         data=sample)
  assert streamed.results["input"] == "stream"
  assert streamed.results["test"] == by_cli["test"]

  # Other arrays are refused in one line, the run left as it was.
  before = sorted(p.name for p in (tmp_path / "resumed").iterdir())
  other = {**sample, "train": sample["train"][::-1].copy()}
  with pytest.raises(aejax.DataChangedError, match="other arrays than data= gives") as info:
    aejax.train(vanilla(num_epochs=3, **constant), tmp_path / "resumed", data=other)
  assert "\n" not in str(info.value) and isinstance(info.value, aejax.WorkdirError)
  assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == before


def test_a_signal_stops_a_python_run_with_stopped_and_it_resumes_bit_for_bit(
    tmp_path, sample, monkeypatch):
  """SIGUSR1 while epoch 1's metrics are written: the run saves at the end of epoch 2
  and raises aejax.Stopped; called again, it finishes as an uninterrupted run."""
  straight = aejax.train(vanilla(num_epochs=3), tmp_path / "straight", data=sample)
  write_epoch = writers.MetricWriter.write_epoch

  def signalled(self, record, num_epochs):
    if record["epoch"] == 1:
      os.kill(os.getpid(), signal.SIGUSR1)
    return write_epoch(self, record, num_epochs)

  monkeypatch.setattr(writers.MetricWriter, "write_epoch", signalled)
  with pytest.raises(aejax.Stopped, match="SIGUSR1 at step 10 .*end of epoch 2"):
    aejax.train(vanilla(num_epochs=3), tmp_path / "stopped", data=sample)
  monkeypatch.undo()
  resumed = aejax.train(vanilla(num_epochs=3), tmp_path / "stopped", data=sample)
  assert resumed.results["test"] == straight.results["test"]
  assert [r["epoch"] for r in resumed.history] == [1, 2, 3]


def test_a_trained_run_loads_encodes_any_batch_and_pickles(tmp_path, sample):
  aejax.train(vanilla(num_epochs=1), tmp_path / "run",
              data=(sample["train"], sample["test"]))
  trained = aejax.load(tmp_path / "run")
  assert trained.config.model.code_size == 16 and trained.image_shape == (28, 28, 1)
  assert trained.history[-1]["epoch"] == 1 and trained.results["epochs"] == 1
  assert trained.members == []
  x = sample["test"]
  codes = trained.encode(x)
  assert codes.shape == (200, 16) and codes.dtype == np.float32
  # Any batch size, and uint8 or float in [0, 1] or JAX: the same codes.
  np.testing.assert_array_equal(trained.encode(x[:7]), codes[:7])
  np.testing.assert_array_equal(trained.encode(jnp.asarray(x[:1] / 255.0)), codes[:1])
  assert trained.encode(x[:0]).shape == (0, 16)
  reconstruction = trained.reconstruct(x)
  assert reconstruction.shape == (200, 28, 28, 1)
  mse = np.mean(np.square(reconstruction.astype(np.float64) - x / 255.0))
  np.testing.assert_allclose(mse, trained.results["test"]["mse"], rtol=1e-5)
  np.testing.assert_array_equal(trained.decode(codes), reconstruction)
  again = pickle.loads(pickle.dumps(trained))
  np.testing.assert_array_equal(again.encode(x), codes)
  assert again.results == trained.results and again.history == trained.history
  with pytest.raises(aejax.WorkdirError, match="does not exist"):
    aejax.load(tmp_path / "none")


def test_vectors_standardised_and_a_sweep_of_them(tmp_path):
  """Standardised vectors go in and come out in their own units; a sweep's members
  load each with its own config."""
  train = RNG.normal(3.0, 2.0, (256, 12)).astype(np.float32)
  test = RNG.normal(3.0, 2.0, (64, 12)).astype(np.float32)
  config = aejax.get_config("vanilla", standardize=True, num_epochs=1, sweep="seed=0:2",
                            **{"model.code_size": 4})
  trained = aejax.train(config, tmp_path / "sweep", data=(train, test))
  assert trained.results["dataset"]["standardize"]
  members = trained.members
  assert [m.config.seed for m in members] == [0, 1]
  for member in members:
    error = np.mean(np.square(member.reconstruct(test).astype(np.float64) - test))
    np.testing.assert_allclose(error, member.results["test"]["mse_data_units"], rtol=1e-4)
  assert not np.array_equal(members[0].encode(test), members[1].encode(test))
  assert aejax.load(tmp_path / "sweep", member=1).config.seed == 1


def test_a_vae_samples_from_its_prior(tmp_path):
  config = aejax.get_config("vae", num_epochs=1, batch_size=16,
                            **{"model.hidden": (16,), "model.latent_size": 2,
                               "model.eval_nll_samples": 4})
  images = RNG.integers(0, 256, (80, 8, 8, 1), dtype=np.uint8)
  trained = aejax.train(config, tmp_path / "vae", data=images)
  drawn = trained.sample(5, seed=1)
  assert drawn.shape == (5, 8, 8, 1) and 0 <= drawn.min() and drawn.max() <= 1
  np.testing.assert_array_equal(drawn, trained.sample(5, seed=1))
  assert trained.results["model_eval"]["nll"] > 0
  with pytest.raises(ValueError, match="not a rate"):
    trained.codec  # noqa: B018


def test_a_codec_run_codes_images_in_bytes_without_writing_its_workdir(tmp_path):
  config = aejax.get_config("codec", num_epochs=1, batch_size=16,
                            **{"model.features": (4,), "model.latent_channels": 2})
  images = RNG.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
  trained = aejax.train(config, tmp_path / "codec", data=images)
  listing = sorted(os.listdir(tmp_path / "codec"))
  strings = trained.codec.encode(images[:5])
  assert all(isinstance(s, bytes) and s for s in strings)
  # The bytes decode to the model's own reconstruction, bit for bit.
  np.testing.assert_array_equal(trained.codec.decode(strings), trained.reconstruct(images[:5]))
  assert sorted(os.listdir(tmp_path / "codec")) == listing  # its tables stay in memory


def test_from_arrays_holds_out_rows_by_content_and_reads_x_over_255_as_uint8():
  x = RNG.integers(0, 256, (400, 6, 6, 1), dtype=np.uint8)
  labels = np.arange(400) % 10
  ds = data_lib.from_arrays(x, train_labels=labels)
  assert 0 < len(ds.test_images) < 80 and ds.n_train + len(ds.test_images) == 400
  assert "sha256" in ds.record()["split"]
  # A row's split follows its bytes: shuffled, the same rows are held out.
  order = RNG.permutation(400)
  shuffled = data_lib.from_arrays(x[order], train_labels=labels[order])
  as_set = lambda images: sorted(map(bytes, images.reshape(len(images), -1)))
  assert as_set(shuffled.test_images) == as_set(ds.test_images)
  # Images a notebook scaled to [0, 1] (either way) are the same data as the uint8.
  for scaled in (x / 255.0, x.astype(np.float32) / 255):
    again = data_lib.from_arrays(scaled, train_labels=labels)
    assert again.fingerprint == ds.fingerprint
  with pytest.raises(aejax.DataError, match="between the 256 levels"):
    data_lib.from_arrays(x / 256.0)


def test_get_config_by_name_recipe_and_path_with_checked_overrides(tmp_path):
  assert aejax.get_config("vanilla").name == "vanilla"
  assert aejax.get_config("vae:iwae").losses == "iwae=1"
  assert aejax.get_config("experiments/configs/conv.py", num_epochs=2).num_epochs == 2
  config = aejax.get_config("vanilla", **{"model.hidden": [32], "learning_rate": 1})
  assert config.model.hidden == (32,) and config.learning_rate == 1.0
  cases = {  # the command line's one-line messages, without its "--config."
      ("vanilla", "num_epoch"): r'^num_epoch: unknown config key; Did you mean "num_epochs"',
      ("vanilla", "model.code_siz"): r'^model.code_siz: unknown config key; Did you mean',
      ("vanilla", "num_epochs=2.5"): r"config.num_epochs=2.5 is of type float",
      ("vanilla", "batch_size=0"): r"config.batch_size must be a positive integer, got 0",
      ("vanila", None): r"'vanila' is not a config that ships with aejax; Did you mean",
  }
  for (name, override), match in cases.items():
    key, _, value = (override or "").partition("=")
    overrides = {key: json.loads(value) if value else 1} if override else {}
    with pytest.raises(aejax.ConfigError, match=match) as info:
      aejax.get_config(name, **overrides)
    assert "\n" not in str(info.value)


def test_bad_input_is_one_public_error_before_compute_leaving_no_workdir(tmp_path, sample):
  x = sample["train"]
  workdir = tmp_path / "run"
  cases = [
      ({"train": x / 255.0 * 2}, aejax.DataError, r"'train' holds float images .* outside"),
      ({"train": np.array([{"a": 1}] * 4)}, aejax.DataError, r"'train' has dtype object"),
      ({"train": x, "train_labels": np.zeros(3)}, aejax.DataError,
       r"'train_labels' holds 3 labels .* for 640 train images"),
      ({"train": x, "test": x[:5], "test_labels": np.zeros(6, int)}, aejax.DataError,
       r"'test_labels' holds 6 labels"),
      ({"train": x, "images": x}, aejax.DataError, r"data= holds \['images'\]"),
      ({"train": RNG.normal(size=(64, 5)).astype(np.float32)}, aejax.ConfigError,
       r"outputs values in \[0, 1\]|trains on images"),
  ]
  for data, error, match in cases:
    config = vanilla() if error is aejax.DataError else aejax.get_config("conv")
    with pytest.raises(error, match=match) as info:
      aejax.train(config, workdir, data=data)
    assert "\n" not in str(info.value)
    assert not workdir.exists()
  # A config naming arrays, without them: the same, from the data's own loader.
  with pytest.raises(aejax.DataError, match="arrays held in memory"):
    aejax.train(vanilla(dataset="arrays"), workdir)
  assert not workdir.exists()

  aejax.train(vanilla(num_epochs=1), workdir, data=sample)
  trained = aejax.load(workdir)
  listing = sorted(os.listdir(workdir))
  for bad, match in ((np.zeros((2, 32, 32, 3), np.uint8), r"^images: .* trained on images "
                      r"\[N, 28, 28, 1\]; got \[2, 32, 32, 3\]"),
                     (x[0], r"^images: .*got \[28, 28, 1\]"),
                     (np.array(["a", "b"]), r"^images: an array of numbers")):
    with pytest.raises(aejax.DataError, match=match):
      trained.encode(bad)
  with pytest.raises(aejax.DataError, match=r"^codes: .* \[N, 16\]; got \[2, 8\]"):
    trained.decode(np.zeros((2, 8)))
  assert sorted(os.listdir(workdir)) == listing


def test_importing_aejax_is_light():
  code = ("import sys, aejax; heavy = [m for m in ('jax', 'flax', 'sklearn', 'orbax') "
          "if m in sys.modules]; assert not heavy, heavy; "
          "assert aejax.Stopped.__module__ == 'aejax.preemption'; "
          "assert aejax.train.__module__ == 'aejax.trainer' and callable(aejax.search)")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(__file__))


def test_the_notebook_in_docs_python_md_runs(tmp_path):
  """docs/python.md's script, as it stands there, in a fresh interpreter."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  page = open(os.path.join(root, "docs", "python.md")).read()
  script = page.split("```python\n", 1)[1].split("```", 1)[0]
  env = {**os.environ, "PYTHONPATH": root, "AEJAX_DATA_DIR": ""}
  proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "probe accuracy on 32 codes" in proc.stdout
  assert (tmp_path / "runs" / "notebook" / "results.json").is_file()
