"""Reading a run never harms it, and a checkpoint is verified before it is trusted.

Readers (``analysis.load_run``, ``experiments.evaluate_run``, the codec) open a workdir
read-only: run beside a training subprocess that checkpoints every 5 steps, the run
ends exactly as an uninterrupted one. Each checkpoint records its arrays' digests:
damaged array bytes are caught on restore, moved aside by the trainer, refused (never
moved) by readers. Vanilla on the bundled sample (batch 256: 23 steps an epoch).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE = ("--config=experiments/configs/vanilla.py", "--config.dataset=mnist_sample",
        "--config.batch_size=256", "--config.checkpoint_every_steps=5")
EPOCHS = 6


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


def metric_lines(workdir) -> list[dict]:
  """metrics.jsonl without its clock readings."""
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  clock = ("seconds", "train_seconds", "examples_per_second")
  return [{k: v for k, v in line.items() if k not in clock} for line in lines]


def listing(folder: pathlib.Path) -> dict:
  """Every path under ``folder`` with its size and modification time."""
  return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(folder.rglob("*"))}


def steps(workdir) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cli) -> pathlib.Path:
  """An uninterrupted, unread run's workdir (tests that change it copy it)."""
  workdir = tmp_path_factory.mktemp("straight")
  cli.run(workdir, *BASE, f"--config.num_epochs={EPOCHS}")
  return workdir


# What a reader loop runs: load_run again and again until the stop file appears,
# one line per read: "ok <step>", or the reader's own one line of error.
LOAD_LOOP = """
import pathlib, sys
from absl import logging
from aejax import analysis, checkpoint
workdir, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
while not stop.exists():
  try:
    run = analysis.load_run(workdir)
    print("ok", run.step, flush=True)
  except (FileNotFoundError, checkpoint.UnreadableCheckpointsError) as e:
    print("error:", e, flush=True)
"""


@pytest.mark.slow
def test_readers_beside_a_training_run_never_harm_it(tmp_path, straight, cli):
  workdir, stop = tmp_path / "run", tmp_path / "stop"
  env = {**os.environ, "AEJAX_DATA_DIR": ""}
  loop_log = tmp_path / "loop.err"
  with open(loop_log, "w") as loop_err_file:  # a pipe nobody drains would block it
    loop = subprocess.Popen([sys.executable, "-c", LOAD_LOOP, str(workdir), str(stop)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=loop_err_file,
                            text=True)
  # The trainer pauses after its second chunk of 5 steps (two checkpoints written)
  # until the reader loop has read one: at least one read overlaps the run, however
  # slow the machine; the rest overlap as they happen to.
  paused = tmp_path / "paused"
  trainer = cli.start_child(workdir, "chunk:2", paused, *BASE,
                            f"--config.num_epochs={EPOCHS}", output=True)
  cli.wait_for(paused, trainer)
  first = [loop.stdout.readline()]
  while not first[-1].startswith("ok "):
    assert first[-1], "the reader loop ended before reading a checkpoint"
    first.append(loop.stdout.readline())
  paused.unlink()
  evaluations = []
  while trainer.poll() is None:  # evaluate_run, one after the other, while it trains
    evaluations.append(cli.run_module("experiments.evaluate_run", f"--workdir={workdir}",
                                      check=False))
  out, err = trainer.communicate()
  stop.touch()
  reads, _ = loop.communicate(timeout=120)
  reads, loop_err = "".join(first) + reads, loop_log.read_text()
  assert trainer.returncode == 0, err[-3000:]
  assert loop.returncode == 0 and "Traceback" not in loop_err, loop_err[-3000:]
  assert results(workdir)["test"] == results(straight)["test"]
  assert metric_lines(workdir) == metric_lines(straight)
  assert not (workdir / "checkpoints_corrupt").exists()
  # Every read gave a complete checkpoint's step, or said in one line why not.
  read_steps = []
  for line in reads.splitlines():
    word, rest = line.split(" ", 1)
    assert word in ("ok", "error:"), line
    if word == "ok":
      read_steps.append(int(rest))
    else:
      assert "holds no" in rest, line
  assert read_steps and all(0 < s <= 23 * EPOCHS for s in read_steps), read_steps
  for proc in evaluations:
    if proc.returncode == 0:
      assert json.loads(proc.stdout)["step"] > 0
    else:
      errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
      assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr
  # A finished run read again: nothing in it changes, a planted unfinished folder stays.
  (workdir / "checkpoints" / "999.orbax-checkpoint-tmp-1").mkdir()
  before = listing(workdir)
  proc = cli.run_module("experiments.evaluate_run", f"--workdir={workdir}")
  assert json.loads(proc.stdout)["step"] == 23 * EPOCHS
  assert listing(workdir) == before


def damage(step_dir: pathlib.Path, item: str = "") -> pathlib.Path:
  """Overwrites 64 bytes in the middle of the checkpoint's largest array file (of
  ``item``, else of any), as a failing disk would: the file keeps its size."""
  path = max((p for p in (step_dir / item).rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)
  raw = bytearray(path.read_bytes())
  middle = len(raw) // 2
  raw[middle:middle + 64] = bytes(range(64))
  path.write_bytes(bytes(raw))
  return path


@pytest.mark.slow
def test_damaged_array_bytes_are_caught_the_run_resumes_from_the_one_before(
    tmp_path, straight, cli):
  workdir = tmp_path / "run"
  shutil.copytree(straight, workdir)
  newest, before = steps(workdir)[-1], steps(workdir)[-2]
  damage(workdir / "checkpoints" / str(newest))  # the largest file: the optimizer's
  damage(workdir / "checkpoints" / str(newest), "variables")
  (workdir / "results.json").unlink()
  # Readers refuse it in one line, read the one before, and move nothing.
  unchanged = listing(workdir)
  proc = cli.run_module("experiments.evaluate_run", f"--workdir={workdir}")
  assert json.loads(proc.stdout)["step"] == before
  (line,) = [l for l in proc.stderr.splitlines() if "cannot be read" in l]
  assert f"Checkpoint {newest} of {workdir} cannot be read" in line
  assert f"read the one before it, step {before}" in line
  assert "Traceback" not in proc.stderr
  assert listing(workdir) == unchanged
  # The trainer moves it aside, resumes from the one before and ends where the
  # uninterrupted run ended.
  proc = cli.run(workdir, *BASE, f"--config.num_epochs={EPOCHS}")
  (line,) = [l for l in proc.stderr.splitlines() if "cannot be restored" in l]
  assert f"Checkpoint {newest} cannot be restored" in line and f"step {before}" in line
  assert (workdir / "checkpoints_corrupt" / str(newest)).is_dir()
  assert f"Resumed from the checkpoint at step {before}" in proc.stderr
  assert results(workdir)["test"] == results(straight)["test"]
  assert metric_lines(workdir) == metric_lines(straight)
  # When no checkpoint verifies: one line, exit 1, nothing moved or overwritten.
  for step in steps(workdir):
    damage(workdir / "checkpoints" / str(step), "variables")
  unchanged = listing(workdir)
  proc = cli.run(workdir, *BASE, f"--config.num_epochs={EPOCHS}", check=False)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  (line,) = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert line.startswith(f"error: No checkpoint in {workdir / 'checkpoints'} can be restored")
  without_lock = lambda entries: {k: v for k, v in entries.items() if k != ".lock"}
  assert without_lock(listing(workdir)) == without_lock(unchanged)  # the lock is the run's


def test_a_digest_mismatch_is_refused_and_an_older_checkpoint_accepted(tmp_path):
  """Arrays whose bytes differ from the recorded digest (here the record altered, the
  files intact) do not restore; a checkpoint without digests (older) does."""
  import jax.numpy as jnp
  import numpy as np
  from aejax import checkpoint
  variables = {"params": {"w": jnp.arange(6.0).reshape(2, 3)}}
  opt_state = {"mu": jnp.ones(3)}
  mngr = checkpoint.manager(tmp_path)
  checkpoint.save(mngr, 1, variables, opt_state, {"config": {}})
  restored, _, meta = checkpoint.restore(mngr, 1, variables, opt_state)
  np.testing.assert_array_equal(restored["params"]["w"], variables["params"]["w"])
  assert "digests" not in meta
  meta_file = tmp_path / "checkpoints" / "1" / "meta" / "metadata"
  record = json.loads(meta_file.read_text())
  assert set(record["digests"]) == {"variables", "opt_state"}
  record["digests"]["variables"]["['params']['w']"] = "0" * 64
  meta_file.write_text(json.dumps(record))
  with pytest.raises(checkpoint.DigestMismatchError, match=r"\['params'\]\['w'\]"):
    checkpoint.restore(mngr, 1, variables, opt_state)
  with pytest.raises(checkpoint.UnreadableCheckpointsError, match="nothing was changed"):
    checkpoint.restore_newest(mngr, variables, opt_state)
  assert (tmp_path / "checkpoints" / "1").is_dir()
  del record["digests"]
  meta_file.write_text(json.dumps(record))
  step, restored, _, _ = checkpoint.restore_newest(mngr, variables, opt_state)
  assert step == 1
  mngr.close()


# ------------------------------------------------------------ the smaller cases


def error_lines(proc) -> list[str]:
  return [l for l in proc.stderr.splitlines() if l.startswith("error:")]


@pytest.mark.slow
def test_evaluate_run_on_an_empty_or_missing_folder_is_one_line_and_creates_nothing(
    tmp_path, cli):
  (tmp_path / "empty").mkdir()
  for workdir in (tmp_path / "empty", tmp_path / "missing" / "run"):
    proc = cli.run_module("experiments.evaluate_run", f"--workdir={workdir}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert error_lines(proc) == [
        f"error: {workdir} holds no checkpoint, so no trained run; train one with "
        "`python -m experiments.main --config <config> --workdir <dir>`."]
  assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty"]


@pytest.mark.slow
def test_codec_argument_errors_are_one_line(tmp_path, cli):
  """Refused before any model is loaded (the workdir need not exist)."""
  from PIL import Image
  Image.new("L", (28, 28)).save(tmp_path / "in.png")
  (tmp_path / "notes.txt").write_text("not an image")
  cases = {(): "got 'no command'",
           ("encode", tmp_path / "notes.txt", tmp_path / "o.bin"): "is not an image",
           ("encode", tmp_path, tmp_path / "o.bin"): "is a folder; encode reads one file",
           ("decode", tmp_path / "in.png", tmp_path): "is a folder; decode writes one file"}
  for args, message in cases.items():
    proc = cli.run_module("experiments.codec", f"--workdir={tmp_path / 'run'}",
                          *map(str, args), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (line,) = error_lines(proc)
    assert message in line, line


@pytest.mark.slow
def test_a_damaged_config_json_is_restored_from_the_checkpoint(tmp_path, straight, cli):
  workdir = tmp_path / "run"
  shutil.copytree(straight, workdir)
  original = (workdir / "config.json").read_text()
  (workdir / "config.json").write_text(original[:40])
  (workdir / "results.json").unlink()
  proc = cli.run(workdir, *BASE, f"--config.num_epochs={EPOCHS}")
  assert "could not be read; restored it from the checkpoint" in proc.stderr
  assert json.loads((workdir / "config.json").read_text()) == json.loads(original)
  assert results(workdir)["test"] == results(straight)["test"]


def test_symlinked_class_folders_are_followed_and_a_dangling_link_is_named(tmp_path):
  from PIL import Image
  from aejax import data
  from aejax.data import folders
  pictures, elsewhere = tmp_path / "pictures", tmp_path / "elsewhere"
  for folder, value in ((pictures / "cats", 0), (elsewhere / "dogs", 255)):
    folder.mkdir(parents=True)
    for i in range(10):
      Image.new("L", (8, 8), value).save(folder / f"{i}.png")
  (pictures / "dogs").symlink_to(elsewhere / "dogs")  # a class folder linked in
  (pictures / "cats" / "up").symlink_to(pictures)  # a loop: walked once
  dataset = folders.read_folder(pictures, test_fraction=0.3)
  assert dataset.details["classes"] == ["cats", "dogs"]
  labels = np.concatenate([dataset.train_labels, dataset.test_labels])
  images = np.concatenate([dataset.train_images, dataset.test_images])
  assert sorted(labels.tolist()) == [0] * 10 + [1] * 10
  assert (images[labels == 1] == 255).all() and (images[labels == 0] == 0).all()
  (pictures / "cats" / "gone.png").symlink_to(tmp_path / "nowhere.png")
  with pytest.raises(data.DataError, match=f"{pictures / 'cats' / 'gone.png'} cannot be read"):
    folders.read_folder(pictures, test_fraction=0.3)


def test_results_table_dashes_missing_figures_and_names_what_it_leaves_out(
    tmp_path, capsys):
  from experiments import results_table
  run = {"name": "vanilla", "dataset": {"name": "npz:v", "n_train": 100}, "epochs": 2,
         "test": {"mse": 0.5, "sse_per_image": 3.0, "code_mean_activation": 0.1},
         "train_seconds": 4.0}  # vectors: no PSNR
  for name, text in (("vectors", json.dumps(run)), ("cut", json.dumps(run)[:50]),
                     ("other", "[1, 2]")):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(text)
  (tmp_path / "none").mkdir()
  results_table.main([str(tmp_path / n) for n in ("vectors", "cut", "other", "none")])
  out, err = capsys.readouterr()
  (row,) = [l for l in out.splitlines() if l.startswith("| `vectors`")]
  assert row == ("| `vectors` | vanilla | npz:v (100) | 2 | 0.50000 | 3.00 | – | 0.100 | – "
                 "| 4 |")
  left_out = err.splitlines()
  assert len(left_out) == 3 and all(l.startswith("left out: ") for l in left_out)
  assert f"{tmp_path / 'cut'} ({tmp_path / 'cut' / 'results.json'} is not complete JSON" \
      in left_out[0]
  assert "other" in left_out[1] and f"{tmp_path / 'none'} (no results.json)" == left_out[2][10:]
  with pytest.raises(SystemExit, match="no run to show"):
    results_table.main([str(tmp_path / "none")])
