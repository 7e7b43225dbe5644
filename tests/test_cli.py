"""End to end through the command line on the bundled sample: files, resume, errors."""

import json
import shutil

import jax.numpy as jnp
import pytest

from aejax import config as config_lib
from aejax import engine, losses, trainer
from experiments.configs import base

CONFIGS = ("vanilla", "multilayer", "conv", "sparse", "denoising")
TEST_KEYS = {"mse", "sse_per_image", "psnr_db", "bce", "code_mean_activation",
             "code_fraction_zero"}


def metrics_lines(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def vanilla_run(tmp_path_factory, cli):
  """The vanilla config's run: checked as every config's is, then a copy rerun."""
  workdir = tmp_path_factory.mktemp("vanilla")
  cli.run_config("vanilla", workdir)
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_each_config_trains_and_leaves_its_files(config, tmp_path, cli, request):
  # --config.num_epochs=1 on each config (sparse's 1-epoch warm-up is clamped).
  if config == "vanilla":
    tmp_path = request.getfixturevalue("vanilla_run")
  else:
    cli.run_config(config, tmp_path)
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["name"] == config and results["epochs"] == 1
  assert results["dataset"] == {**results["dataset"], "name": "mnist_sample",
                                "source": "bundled_sample", "n_train": 6000, "n_test": 1000}
  assert TEST_KEYS <= set(results["test"])
  stats = results["code_stats"]  # every model, the L1-sparse one too
  assert set(stats) == {"l0", "dead_fraction", "dead_count", "code_units",
                        "fraction_variance_explained"}
  assert 0 <= stats["l0"] <= stats["code_units"] and stats["fraction_variance_explained"] < 1
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
  assert sorted(p.name for p in (tmp_path / "checkpoints" / str(line["step"])).iterdir()
                if p.is_dir()) == ["meta", "opt_state", "variables"]
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert (tmp_path / "reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_rerun_resumes_and_may_change_only_the_layout(vanilla_run, tmp_path, cli):
  workdir = tmp_path / "run"
  shutil.copytree(vanilla_run, workdir)  # a trained run of its own, as the first left it
  # How the step is laid out may change on resumption; what it computes may not.
  again = cli.run_config("vanilla", workdir, "--config.epoch_mode=step",
                         "--config.microbatch_size=64")
  assert "Resumed" in again.stderr and len(metrics_lines(workdir)) == 1  # nothing retrained
  other = cli.run_config("vanilla", workdir, "--config.model.code_size=32", check=False)
  assert other.returncode == 1 and "different config (model.code_size: 64 -> 32)" in other.stderr


@pytest.mark.slow
def test_cli_rejects_bad_values_before_compute(tmp_path, cli):
  proc = cli.run_config("vanilla", tmp_path, "--config.model.code_size=0", check=False)
  assert proc.returncode == 1 and "config.model.code_size must be a positive integer" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()
  proc = cli.run_config("vanilla", tmp_path, "--config.batch_size=100000", check=False)
  assert proc.returncode == 1 and "larger than the 6000 training images" in proc.stderr


@pytest.mark.parametrize("key, value, message", [
    ("model.code_size", 0, "code_size must be a positive integer"),
    ("model.name", "gan", "model.name='gan' is unknown"),
    ("losses", "mse=1, contractive_x=1", "Unknown loss term 'contractive_x'"),
    ("corruption.level", -0.5, "must be ≥ 0"),
    ("corruption.level", float("inf"), "corruption.level must be a finite number"),
    ("corruption.level", float("nan"), "corruption.level must be a finite number"),
    ("corruption.name", "blur", "Unknown corruption 'blur'"),
    ("dataset", "imagenet", "config.dataset='imagenet' is unknown"),
    ("batch_size", 0, "batch_size must be a positive integer"),
    ("num_epochs", -1, "num_epochs must be a positive integer"),
    ("learning_rate", 0.0, "learning_rate must be > 0"),
    ("learning_rate", float("nan"), "learning_rate must be > 0"),
    ("schedule", "linear", "schedule='linear' is unknown"),
    ("epoch_mode", "fast", "epoch_mode='fast'"),
    ("microbatch_size", 100, "microbatch_size must be 0 \\(auto\\) or a divisor of batch_size=128"),
    ("microbatch_size", -1, "microbatch_size must be 0"),
    ("warmup_epochs", -1.0, "warmup_epochs must be ≥ 0"),
    ("final_lr_fraction", -5.0, "final_lr_fraction must lie in \\[0, 1\\]"),
    ("final_lr_fraction", 1.5, "final_lr_fraction must lie in \\[0, 1\\]"),
    ("adam_b1", 1.5, "adam_b1 must lie in \\[0, 1\\)"),
    ("adam_b2", -0.1, "adam_b2 must lie in \\[0, 1\\)"),
    ("adam_eps", 0.0, "adam_eps must be > 0"),
    ("eval_batch_size", 0, "eval_batch_size must be a positive integer"),
    ("checkpoint_every", 0, "checkpoint_every must be a positive integer"),
    ("checkpoint_every_steps", -5, "checkpoint_every_steps must be 0 \\(off\\) or a positive"),
    ("checkpoint_every_minutes", -1.0, "checkpoint_every_minutes must be 0 \\(off\\)"),
    ("checkpoint_every_minutes", float("nan"), "checkpoint_every_minutes must be 0"),
])
def test_invalid_config_values_raise(key, value, message):
  """Every value is checked before compute, with a message that names the key."""
  config = base.get_config()
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(config)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  config = base.get_config()
  config.dataset, config.batch_size, config.num_epochs = "mnist_sample", 500, 1
  trainer.train_and_evaluate(config, str(tmp_path))
  good_step = metrics_lines(tmp_path)[-1]["step"]

  nan_mse = lambda **arrays: losses.mse(**arrays) * jnp.nan
  monkeypatch.setitem(losses.LOSS_TERMS, "mse", losses.LossTerm(nan_mse, ("reconstruction", "target")))
  config.num_epochs = 2
  with pytest.raises(trainer.NonFiniteLossError, match=f"'mse' became nan at step {good_step + 1}"):
    trainer.train_and_evaluate(config, str(tmp_path))
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
