"""End to end through the command line on the bundled sample: files, resume, errors."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aejax import train
from experiments.configs import base

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ("vanilla", "multilayer", "conv", "sparse", "denoising")
TEST_KEYS = {"mse", "sse_per_image", "psnr_db", "bce", "code_mean_activation",
             "code_fraction_zero"}


def run_cli(config: str, workdir, *overrides: str, check: bool = True):
  cmd = [sys.executable, "-m", "experiments.main",
         f"--config=experiments/configs/{config}.py", f"--workdir={workdir}",
         "--config.dataset=mnist_sample", "--config.num_epochs=1", *overrides]
  env = {**os.environ, "AEJAX_DATA_DIR": ""}
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  if check and proc.returncode != 0:
    raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
  return proc


def metrics_lines(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_each_config_trains_and_leaves_its_files(config, tmp_path):
  # sparse warms up for a whole epoch, which a one-epoch run cannot do.
  run_cli(config, tmp_path, *(["--config.warmup_epochs=0.2"] if config == "sparse" else []))
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["name"] == config and results["epochs"] == 1
  assert results["dataset"] == {**results["dataset"], "name": "mnist_sample",
                                "source": "bundled_sample", "n_train": 6000, "n_test": 1000}
  assert TEST_KEYS <= set(results["test"])
  # One short epoch: a sanity range only; learning itself is tested in test_train.py.
  assert 0 < results["test"]["mse"] < 0.2 and results["train_seconds"] > 0
  assert ("denoising" in results) == (config == "denoising")
  if config == "denoising":
    assert results["denoising"]["psnr_denoised_db"] > results["denoising"]["psnr_noisy_db"]
  (line,) = metrics_lines(tmp_path)
  terms = {"loss", "bce", "l1_activity"} if config == "sparse" else {"loss", "mse"}
  assert set(line["train"]) == terms and set(line["test"]) == terms
  assert json.loads((tmp_path / "config.json").read_text())["name"] == config
  assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [str(line["step"])]
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert (tmp_path / "reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path):
  args = ("--config.num_epochs=2", "--config.batch_size=256")
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  run_cli("vanilla", straight, *args)
  run_cli("vanilla", killed, *args)
  # What a kill during epoch 2 leaves: epoch 1's checkpoint and nothing after it. The
  # metrics line of the lost epoch stays behind on purpose: the rerun must drop it.
  shutil.rmtree(killed / "checkpoints" / "46")
  (killed / "results.json").unlink()
  proc = run_cli("vanilla", killed, *args)
  assert "Resumed from the checkpoint at step 23" in proc.stderr
  assert [l["epoch"] for l in metrics_lines(killed)] == [1, 2]
  a, b = (json.loads((d / "results.json").read_text()) for d in (straight, killed))
  assert a["test"] == b["test"] and a["steps"] == b["steps"] == 46

  # How the step is laid out may change on resumption; what it computes may not.
  again = run_cli("vanilla", killed, *args, "--config.epoch_mode=step",
                  "--config.microbatch_size=128")
  assert "Resumed" in again.stderr and len(metrics_lines(killed)) == 2  # nothing retrained

  other = run_cli("vanilla", killed, "--config.learning_rate=0.1", check=False)
  assert other.returncode == 1 and "different config" in other.stderr


@pytest.mark.slow
def test_cli_rejects_bad_values_before_compute(tmp_path):
  proc = run_cli("vanilla", tmp_path, "--config.model.code_size=0", check=False)
  assert proc.returncode == 1 and "config.model.code_size must be > 0" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()
  proc = run_cli("vanilla", tmp_path, "--config.batch_size=100000", check=False)
  assert proc.returncode == 1 and "larger than the 6000 training images" in proc.stderr


@pytest.mark.parametrize("key, value, message", [
    ("model.code_size", 0, "code_size must be > 0"),
    ("model.name", "gan", "model.name='gan' is unknown"),
    ("losses", "mse=1, contractive=1", "Unknown loss term 'contractive'"),
    ("corruption.level", -0.5, "must be ≥ 0"),
    ("corruption.name", "blur", "Unknown corruption 'blur'"),
    ("dataset", "imagenet", "config.dataset='imagenet' is unknown"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("num_epochs", -1, "num_epochs must be a positive integer"),
    ("learning_rate", 0.0, "learning_rate must be > 0"),
    ("schedule", "linear", "schedule='linear' is unknown"),
    ("epoch_mode", "fast", "epoch_mode='fast'"),
    ("microbatch_size", 100, "microbatch_size must be 0 \\(auto\\) or a divisor of batch_size=128"),
    ("microbatch_size", -1, "microbatch_size must be 0"),
    ("warmup_epochs", 5.0, "warmup_epochs must be ≥ 0 and below num_epochs=5"),
])
def test_invalid_config_values_raise(key, value, message):
  config = base.get_config()
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=message):
    train.validate_config(config)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  config = base.get_config()
  config.dataset, config.batch_size, config.num_epochs = "mnist_sample", 500, 1
  train.train_and_evaluate(config, str(tmp_path))
  good_step = metrics_lines(tmp_path)[-1]["step"]

  real = train.make_loss_fn

  def poisoned(*args):
    loss_fn = real(*args)
    def nan_loss(params, inputs, targets):
      total, terms = loss_fn(params, inputs, targets)
      return total, {**terms, "mse": terms["mse"] * np.nan}
    return nan_loss

  monkeypatch.setattr(train, "make_loss_fn", poisoned)
  config.num_epochs = 2
  with pytest.raises(train.NonFiniteLossError, match=f"'mse' became nan at step {good_step + 1}"):
    train.train_and_evaluate(config, str(tmp_path))
  assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [str(good_step)]
  assert len(metrics_lines(tmp_path)) == 1


def test_keras_recipe_after_the_colon():
  from experiments.configs import conv, sparse, vanilla
  keras = sparse.get_config("keras")
  assert (keras.schedule, keras.learning_rate, keras.adam_eps, keras.model.init) == (
      "constant", 1e-3, 1e-7, "glorot_uniform")
  assert keras.losses == "mse=1, l1_activity=1e-4" and keras.model.code_size == 32
  assert sparse.get_config().losses.startswith("bce=")
  assert conv.get_config("keras").model.init == "glorot_uniform"
  assert vanilla.get_config("") == vanilla.get_config()
  with pytest.raises(ValueError, match="Unknown recipe 'pytorch'"):
    vanilla.get_config("pytorch")
