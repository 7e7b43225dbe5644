"""A workdir never lies and never breaks: data identity, the lock, corrupt checkpoints,
provenance, one-line errors, and real SIGKILLs of a training subprocess.

Every run is vanilla on the bundled sample (batch 256: 23 steps an epoch), so each
takes seconds. The kill tests' child (``cli.start_child``, in tests/helpers.py) runs the
CLI with a pause (and a marker file) at one instant, where the test SIGKILLs it.
"""

import gzip
import json
import os
import pathlib
import shutil
import signal
import time

import jax.numpy as jnp
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "aejax" / "sample"
BASE = ("--config=experiments/configs/vanilla.py", "--config.dataset=mnist_sample",
        "--config.batch_size=256")


def error_lines(proc) -> list[str]:
  return [l for l in proc.stderr.splitlines() if l.startswith("error:")]


def epochs(workdir) -> list[int]:
  return [json.loads(l)["epoch"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def straight_workdir(tmp_path_factory, cli) -> pathlib.Path:
  """An uninterrupted 4-epoch run's workdir (tests that change it copy it)."""
  workdir = tmp_path_factory.mktemp("straight")
  cli.run(workdir, *BASE, "--config.num_epochs=4")
  return workdir


@pytest.fixture(scope="module")
def straight(straight_workdir):
  """The uninterrupted run's results: what every interrupted one must equal."""
  return results(straight_workdir)


# --------------------------------------------------------------- the data


def other_sample(folder: pathlib.Path) -> pathlib.Path:
  """The bundled sample's files with one training pixel changed: other data, same sizes."""
  folder.mkdir(parents=True)
  for path in SAMPLE.glob("*.gz"):
    shutil.copy(path, folder / path.name)
  images = folder / "train-images-idx3-ubyte.gz"
  raw = bytearray(gzip.decompress(images.read_bytes()))
  raw[16 + 400] ^= 0xFF
  images.write_bytes(gzip.compress(bytes(raw)))
  return folder


@pytest.mark.slow
def test_other_data_under_a_resumed_run_is_refused(tmp_path, cli):
  # The README's first command with no data around trains on the sample ...
  args = ("--config=experiments/configs/vanilla.py", "--config.batch_size=256",
          "--config.num_epochs=1")
  cli.run(tmp_path / "run", *args, env={"TFDS_DATA_DIR": str(tmp_path / "tfds")})
  before = (tmp_path / "run" / "metrics.jsonl").read_text()
  # ... then AEJAX_DATA_DIR names other data: refused, nothing touched.
  other = other_sample(tmp_path / "other")
  proc = cli.run(tmp_path / "run", *args, "--config.num_epochs=2", check=False,
                 env={"AEJAX_DATA_DIR": str(other), "TFDS_DATA_DIR": str(tmp_path / "tfds")})
  assert proc.returncode == 1
  (line,) = error_lines(proc)
  assert "was trained on other data than this command found" in line
  assert "source: 'bundled_sample' -> 'idx'" in line and "--config.data_dir=" in line
  assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
  # The same images from a folder (the sample's own files) are the same data.
  shutil.copytree(SAMPLE, tmp_path / "same")
  cli.run(tmp_path / "run", *args, "--config.num_epochs=2",
          env={"AEJAX_DATA_DIR": str(tmp_path / "same"), "TFDS_DATA_DIR": str(tmp_path / "tfds")})
  assert epochs(tmp_path / "run") == [1, 2]
  assert results(tmp_path / "run")["dataset"]["source"] == "idx"


# ---------------------------------------------------------- corrupt checkpoints


def corrupt_truncate(step_dir: pathlib.Path) -> None:
  data_files = [p for p in (step_dir / "variables").rglob("*") if p.is_file()
                and p.stat().st_size > 1000]
  for path in data_files:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def corrupt_metadata(step_dir: pathlib.Path) -> None:
  for path in step_dir.rglob("_METADATA"):
    path.unlink()


def corrupt_manifests(step_dir: pathlib.Path) -> None:
  for path in step_dir.rglob("manifest.ocdbt"):
    path.unlink()


@pytest.mark.slow
@pytest.mark.parametrize("corrupt", [corrupt_truncate, corrupt_metadata, corrupt_manifests])
def test_a_corrupt_latest_checkpoint_is_moved_aside_and_the_one_before_used(
    corrupt, tmp_path, straight_workdir, straight, cli):
  shutil.copytree(straight_workdir, tmp_path, dirs_exist_ok=True)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
  assert steps == [69, 92]
  corrupt(tmp_path / "checkpoints" / "92")
  (tmp_path / "results.json").unlink()
  proc = cli.run(tmp_path, *BASE, "--config.num_epochs=4")
  assert "Checkpoint 92 cannot be restored" in proc.stderr
  assert "Resumed from the checkpoint at step 69" in proc.stderr
  assert (tmp_path / "checkpoints_corrupt" / "92").is_dir()  # kept, never deleted
  assert epochs(tmp_path) == [1, 2, 3, 4]
  assert results(tmp_path)["test"] == straight["test"]


# ------------------------------------------------------------------- the lock


@pytest.mark.slow
def test_a_second_run_in_a_busy_workdir_is_refused_and_a_killed_runs_lock_taken_over(
    tmp_path, straight, cli):
  marker = tmp_path / "paused"
  child = cli.start_child(tmp_path / "run", "after_checkpoint:2", marker, *BASE,
                          "--config.num_epochs=4")
  cli.wait_for(marker, child)
  proc = cli.run(tmp_path / "run", *BASE, "--config.num_epochs=4", check=False)
  assert proc.returncode == 1
  assert error_lines(proc) == [
      f"error: {tmp_path / 'run'} is in use by another run (pid {child.pid}); wait for it "
      "to finish, or use another --workdir."]
  child.send_signal(signal.SIGKILL)
  child.wait()
  cli.run(tmp_path / "run", *BASE, "--config.num_epochs=4")  # the lock is free again
  assert epochs(tmp_path / "run") == [1, 2, 3, 4]
  assert results(tmp_path / "run")["test"] == straight["test"]


def test_a_run_that_fails_before_writing_leaves_the_workdir_as_it_found_it(tmp_path):
  """The folders it made are removed, a lock file it made too, and a lock file it
  found gets its content back; once the run wrote anything, nothing is undone. A
  second run is refused as before, and leaves the first's lock alone; the first,
  letting go, empties the lock file."""
  from aejax import checkpoint_reader, workdir

  def fail(path):
    with pytest.raises(ZeroDivisionError):
      with workdir.Workdir(path):
        1 / 0

  fail(tmp_path / "new" / "run")
  (tmp_path / "empty").mkdir()
  fail(tmp_path / "empty")
  assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty"]
  (tmp_path / "kept").mkdir()
  (tmp_path / "kept" / ".lock").write_text("123\n")
  (tmp_path / "kept" / "config.json").write_text("{}")
  fail(tmp_path / "kept")
  assert (tmp_path / "kept" / ".lock").read_text() == "123\n"
  assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [".lock", "config.json"]
  with pytest.raises(ZeroDivisionError):
    with workdir.Workdir(tmp_path / "wrote") as work:
      work.write_json("config.json", {})
      1 / 0
  assert sorted(p.name for p in (tmp_path / "wrote").iterdir()) == [".lock", "config.json"]
  with workdir.Workdir(tmp_path / "busy"):
    with pytest.raises(workdir.WorkdirError, match="is in use by another run"):
      with workdir.Workdir(tmp_path / "busy"):
        pass
    assert (tmp_path / "busy" / ".lock").read_text() == f"{os.getpid()}\n"
  # Let go, the lock file names no holder: a reader sees no run training.
  assert (tmp_path / "busy" / ".lock").read_text() == ""
  assert checkpoint_reader.training_pid(tmp_path / "busy") is None


# --------------------------------------------------------- provenance


@pytest.mark.slow
def test_resuming_records_changes_beside_the_original_config(tmp_path, cli):
  cli.run(tmp_path, *BASE, "--config.num_epochs=2")
  cli.run(tmp_path, *BASE, "--config.num_epochs=3")
  assert json.loads((tmp_path / "config.json").read_text())["num_epochs"] == 2
  segments = results(tmp_path)["segments"]
  assert [s["first_epoch"] for s in segments] == [1, 3]
  assert segments[1]["changes"] == {"num_epochs": [2, 3]}
  assert segments[0]["schedule"]["num_epochs"] == 2 and segments[1]["schedule"]["num_epochs"] == 3
  proc = cli.run(tmp_path, *BASE, "--config.num_epochs=1", check=False)
  assert proc.returncode == 1 and "has already trained 3 epochs" in error_lines(proc)[0]
  assert json.loads((tmp_path / "config.json").read_text())["num_epochs"] == 2
  assert epochs(tmp_path) == [1, 2, 3]


def test_after_a_nan_stop_a_lower_learning_rate_continues_explicitly(tmp_path, monkeypatch):
  from aejax import losses, trainer, workdir
  from experiments.configs import vanilla
  config = vanilla.get_config()
  config.dataset, config.batch_size, config.num_epochs = "mnist_sample", 500, 1
  trainer.train_and_evaluate(config, str(tmp_path))
  real = losses.LOSS_TERMS["mse"]
  monkeypatch.setitem(losses.LOSS_TERMS, "mse", losses.LossTerm(
      lambda **arrays: losses.mse(**arrays) * jnp.nan, real.reads))
  config.num_epochs = 2
  with pytest.raises(trainer.NonFiniteLossError, match="--continue_with_changes"):
    trainer.train_and_evaluate(config, str(tmp_path))
  monkeypatch.setitem(losses.LOSS_TERMS, "mse", real)
  config.learning_rate = 1e-3
  with pytest.raises(workdir.WorkdirError, match="learning_rate: 0.003 -> 0.001.*add "
                                                 "--continue_with_changes"):
    trainer.train_and_evaluate(config, str(tmp_path))
  result = trainer.train_and_evaluate(config, str(tmp_path), continue_with_changes=True)
  assert result["epochs"] == 2
  assert result["segments"][-1]["changes"] == {"learning_rate": [0.003, 0.001],
                                               "num_epochs": [1, 2]}
  config.model.code_size = 32  # the model is not an optimizer setting
  with pytest.raises(workdir.WorkdirError, match="model.code_size: 64 -> 32"):
    trainer.train_and_evaluate(config, str(tmp_path), continue_with_changes=True)


# ---------------------------------------------------------- one-line errors


@pytest.mark.slow
def test_user_errors_are_one_line(tmp_path, cli):
  proc = cli.run(tmp_path / "a", *BASE, "--config.num_epoch=3", check=False)
  assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
      'error: --config.num_epoch: unknown config key; Did you mean "num_epochs" instead of '
      '"num_epoch"?']
  (tmp_path / "file").write_text("")
  for workdir in (tmp_path / "file", tmp_path / "file" / "sub"):
    proc = cli.run(workdir, *BASE, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = error_lines(proc)
    assert line.startswith(f"error: --workdir {workdir} cannot be used")
  # A truncated config.json of a run with no checkpoint: the file is named.
  (tmp_path / "b").mkdir()
  (tmp_path / "b" / "config.json").write_text('{"name": "vani')
  proc = cli.run(tmp_path / "b", *BASE, check=False)
  (line,) = error_lines(proc)
  assert f"{tmp_path / 'b' / 'config.json'} cannot be read" in line


@pytest.mark.slow
def test_a_deleted_config_json_is_restored_from_the_checkpoint_not_overwritten(
    tmp_path, cli):
  cli.run(tmp_path, *BASE, "--config.num_epochs=1")
  original = (tmp_path / "config.json").read_text()
  (tmp_path / "config.json").unlink()
  proc = cli.run(tmp_path, *BASE, "--config.num_epochs=1", "--config.learning_rate=0.1",
                 check=False)
  assert proc.returncode == 1 and "learning_rate: 0.003 -> 0.1" in error_lines(proc)[0]
  assert not (tmp_path / "config.json").exists()
  cli.run(tmp_path, *BASE, "--config.num_epochs=1")
  assert json.loads((tmp_path / "config.json").read_text()) == json.loads(original)


# ------------------------------------------------------------- SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint_write:2", "after_checkpoint:2",
                                   "checkpoint_write:4", "after_checkpoint:4"])
def test_a_sigkill_at_any_instant_loses_nothing(point, tmp_path, straight, cli):
  """Killed while orbax writes epoch N's checkpoint (its files written, not yet
  committed), or between that checkpoint and epoch N's metrics line: the rerun ends
  with the uninterrupted run's test metrics, bit for bit, and one line per epoch."""
  marker = tmp_path / "paused"
  child = cli.start_child(tmp_path / "run", point, marker, *BASE, "--config.num_epochs=4")
  cli.wait_for(marker, child)
  child.send_signal(signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL
  cli.run(tmp_path / "run", *BASE, "--config.num_epochs=4")
  assert epochs(tmp_path / "run") == [1, 2, 3, 4]
  assert results(tmp_path / "run")["test"] == straight["test"]
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  seconds = [json.loads(l)["train_seconds"] for l in lines]
  assert seconds == sorted(seconds) and all(s > 0 for s in seconds)


@pytest.mark.slow
def test_checkpoints_every_other_epoch_a_kill_in_between_repeats_the_epochs_exactly(
    tmp_path, straight, cli):
  """checkpoint_every=2: epoch 3 trained, no checkpoint of it, killed before its
  metrics line. The rerun resumes at epoch 2's checkpoint, trains epochs 3 and 4 again
  and ends bit for bit where the uninterrupted run (a checkpoint every epoch) ended."""
  marker = tmp_path / "paused"
  child = cli.start_child(tmp_path / "run", "after_checkpoint:3", marker, *BASE,
                          "--config.num_epochs=4", "--config.checkpoint_every=2")
  cli.wait_for(marker, child)
  steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps == [46]  # epoch 2 of 23 steps; none for epochs 1 and 3
  assert epochs(tmp_path / "run") == [1, 2]
  child.send_signal(signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL
  cli.run(tmp_path / "run", *BASE, "--config.num_epochs=4", "--config.checkpoint_every=2")
  assert epochs(tmp_path / "run") == [1, 2, 3, 4]
  assert results(tmp_path / "run")["test"] == straight["test"]


@pytest.mark.slow
def test_sigkills_at_timed_instants_then_a_rerun_equals_the_uninterrupted_run(tmp_path,
                                                                             straight, cli):
  workdir = tmp_path / "run"
  for delay in (5.0, 7.0, 9.0):  # start-up, compilation, training: wherever it lands
    child = cli.start_child(workdir, "none", tmp_path / "unused", *BASE,
                            "--config.num_epochs=4")
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
  cli.run(workdir, *BASE, "--config.num_epochs=4")
  assert epochs(workdir) == [1, 2, 3, 4]
  assert results(workdir)["test"] == straight["test"]
