"""Preemption-safe runs: real signals to a training subprocess, checkpoints inside an
epoch, and writes the storage refuses (a full disk, a read-only or a moved workdir).

Every run is vanilla on the bundled sample (batch 256: 23 steps an epoch) with a
checkpoint every 5 steps, so an epoch runs in chunks of 5, 5, 5, 5 and 3 steps. The
child (``cli.start_child``, tests/helpers.py) pauses between two chunks, or before a
checkpoint's write; the test signals or kills it there, or breaks its storage, and
lets it go on. The disk faults need a tmpfs of their own: they run in a user and
mount namespace (``unshare -rm``); the full disk also at several sizes, where the run
fills it wherever it gets to. Signals outside training: ``prepare_data`` and a call
from Python here, the whole life of a run in tests/test_chaos.py.
"""

import collections
import concurrent.futures
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASE = ("--config=experiments/configs/vanilla.py", "--config.dataset=mnist_sample",
        "--config.batch_size=256", "--config.num_epochs=4")
EVERY_5 = (*BASE, "--config.checkpoint_every_steps=5")
STOPPED = 75  # preemption.EXIT_STOPPED, as a job script reads it
# The child pauses after its 6th chunk inside an epoch: epoch 1's four, then epoch 2's
# steps 24-28 and 29-33. The signal arrives there; the chunk of steps 34-38 finishes.
PAUSE, STOP_STEP = "chunk:6", 38


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


def lines(workdir) -> list[dict]:
  """metrics.jsonl without its seconds (which differ between runs)."""
  return [{k: v for k, v in json.loads(l).items() if "second" not in k}
          for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def checkpoints(workdir) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def assert_equals_uninterrupted(workdir, straight) -> None:
  assert lines(workdir) == lines(straight)  # every epoch's train and test figures
  assert results(workdir)["test"] == results(straight)["test"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cli):
  """An uninterrupted run, one call per epoch: what every interrupted one must equal."""
  workdir = tmp_path_factory.mktemp("straight")
  cli.run(workdir, *BASE)
  return workdir


def release(marker: pathlib.Path, child) -> float:
  """Lets a paused child go on; the time it then takes to exit."""
  start = time.monotonic()
  marker.unlink()
  child.wait(timeout=120)
  return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("sig,input", [("SIGTERM", "device"), ("SIGUSR1", "stream"),
                                       ("SIGINT", "device")])
def test_a_signal_mid_epoch_saves_that_step_and_the_rerun_equals_the_uninterrupted_run(
    sig, input, tmp_path, straight, cli):
  env = {"TFDS_DATA_DIR": str(tmp_path / "tfds")}  # the stream's copy of the sample
  run, marker = tmp_path / "run", tmp_path / "paused"
  args = (*EVERY_5, f"--config.input={input}")
  child = cli.start_child(run, PAUSE, marker, *args, env=env, output=True)
  cli.wait_for(marker, child)
  child.send_signal(getattr(signal, sig))
  seconds = release(marker, child)
  stderr = child.stderr.read()
  assert child.returncode == STOPPED, stderr[-3000:]
  assert seconds < 60  # bounded: one chunk, one checkpoint, the exit
  assert stderr.splitlines()[-1] == (
      f"stopped: Stopped by {sig} at step {STOP_STEP} (epoch 2, step 15 of 23); the "
      f"checkpoint of step {STOP_STEP} is saved. Run the same command again to resume "
      f"(exit status {STOPPED}).")
  assert checkpoints(run)[-1] == STOP_STEP and STOP_STEP % 23
  assert not any("tmp" in p.name for p in (run / "checkpoints").iterdir())
  cli.run(run, *args, env=env)
  assert_equals_uninterrupted(run, straight)
  assert results(run)["input"] == input


@pytest.mark.slow
def test_two_processes_stop_together_when_one_is_signalled_and_resume_bit_for_bit(
    tmp_path, cli):
  """2 processes × 4 devices: process 1 gets SIGTERM; both stop at the same step,
  their checkpoint is one, and the rerun ends where an uninterrupted pair ends."""
  def pair(workdir, start):
    with socket.socket() as s:
      s.bind(("localhost", 0))
      port = s.getsockname()[1]
    return [start(workdir, i, f"--coordinator_address=localhost:{port}",
                  "--num_processes=2", f"--process_id={i}") for i in range(2)]

  def finish(procs, status):
    logs = [proc.communicate(timeout=600)[1] for proc in procs]
    for proc, log in zip(procs, logs):
      assert proc.returncode == status, log[-3000:]
    return logs

  plain = lambda workdir, i, *flags: cli.start(workdir, *EVERY_5, *flags, devices=4)
  finish(pair(tmp_path / "straight", plain), 0)
  markers = [tmp_path / f"paused{i}" for i in range(2)]
  paused = lambda workdir, i, *flags: cli.start_child(
      workdir, PAUSE, markers[i], *EVERY_5, *flags, devices=4, output=True)
  procs = pair(tmp_path / "run", paused)
  for marker, proc in zip(markers, procs):
    cli.wait_for(marker, proc)
  procs[1].send_signal(signal.SIGTERM)
  for marker in markers:
    marker.unlink()
  logs = finish(procs, STOPPED)
  assert f"Stopped by SIGTERM at step {STOP_STEP}" in logs[1]
  assert f"Stopped by a signal to another process at step {STOP_STEP}" in logs[0]
  assert checkpoints(tmp_path / "run")[-1] == STOP_STEP
  finish(pair(tmp_path / "run", plain), 0)
  assert_equals_uninterrupted(tmp_path / "run", tmp_path / "straight")
  assert results(tmp_path / "run")["num_processes"] == 2


@pytest.mark.slow
def test_a_sigkill_between_mid_epoch_checkpoints_repeats_those_steps_exactly(
    tmp_path, straight, cli):
  """Killed after training steps 29-33, before their checkpoint is written: the rerun
  resumes inside epoch 2 at step 28 and ends where the uninterrupted run ends."""
  run, marker = tmp_path / "run", tmp_path / "paused"
  child = cli.start_child(run, "save:7", marker, *EVERY_5)  # 5, 10, 15, 20, 23, 28, 33
  cli.wait_for(marker, child)
  assert checkpoints(run) == [23, 28]  # two kept
  child.send_signal(signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL
  proc = cli.run(run, *EVERY_5)
  assert "Resumed from the checkpoint at step 28" in proc.stderr
  assert_equals_uninterrupted(run, straight)


def test_a_checkpoint_falls_due_by_steps_or_minutes():
  from aejax import preemption
  every_10 = preemption.Cadence(10, 0.0, step=23)
  assert not every_10.due(30) and every_10.due(33)
  every_10.saved(33)
  assert not every_10.due(40)
  by_time = preemption.Cadence(0, 1e-6, step=0)  # due 60 µs after the last save
  time.sleep(0.01)
  assert by_time.due(1)
  assert not preemption.Cadence(0, 0.0, step=0).due(10**9)  # both off


@pytest.mark.parametrize("steps, every, mode, input, chunk", [
    (234, 0, "scan", "device", 234),  # an MNIST epoch of 256s: one call, as ever
    (23, 5, "scan", "device", 5),  # 23 is prime: chunks of 5, the last of 3
    (24, 10, "scan", "device", 8),  # a divisor within a factor of two of 10
    (4700, 0, "scan", "device", 470),
    (4700, 0, "step", "device", 10),
    (23, 0, "step", "stream", 1),  # one streamed batch a call
])
def test_the_chunk_of_steps(steps, every, mode, input, chunk):
  from aejax import engine, inputs
  from experiments.configs import vanilla
  config = vanilla.get_config()
  config.checkpoint_every_steps = every
  assert engine.chunk_steps(config, steps, 256 * 784, mode, input) == chunk
  lengths = inputs.chunk_lengths(steps, chunk)
  assert sum(lengths) == steps and set(lengths[:-1]) <= {chunk}
  # Resumed at any step: on to the next cut, then the same cuts as ever.
  for first in range(0, steps, max(1, steps // 7)):
    cut = min(steps, (first // chunk + 1) * chunk)
    assert inputs.chunk_lengths(steps, chunk, first) == [cut - first,
                                                         *lengths[first // chunk + 1:]]


def test_storage_errors_are_told_apart_from_other_errors():
  import errno
  from aejax import workdir
  assert workdir.storage_error(OSError(errno.EROFS, "Read-only file system")) == errno.EROFS
  wrapped = ValueError("RESOURCE_EXHAUSTED: Error writing ... Failed to write 31288 bytes "
                       "to file 30: No space left on device [os_error_code='28']")
  assert workdir.storage_error(wrapped) == errno.ENOSPC
  try:
    try:
      raise OSError(errno.EDQUOT, "Disk quota exceeded")
    except OSError as e:
      raise RuntimeError("the writer failed") from e
  except RuntimeError as e:
    assert workdir.storage_error(e) == errno.EDQUOT  # through the cause
  assert workdir.storage_error(ValueError("shapes (3,) and (4,) differ")) is None


# ------------------------------------------------------------------ storage


def test_a_workdir_moved_while_training_stops_in_one_line_and_resumes_from_its_new_place(
    tmp_path, straight, cli):
  run, moved, marker = tmp_path / "run", tmp_path / "moved", tmp_path / "paused"
  child = cli.start_child(run, PAUSE, marker, *EVERY_5, output=True)
  cli.wait_for(marker, child)
  run.rename(moved)
  release(marker, child)
  errors = [l for l in child.stderr.read().splitlines() if l.startswith("error:")]
  assert child.returncode == 1
  assert errors == [f"error: --workdir {run} was removed or moved while this run was "
                    "training; nothing more is written there. If it was moved, run the "
                    "same command with its new place as --workdir to resume from its last "
                    "checkpoint."]
  assert not run.exists()
  cli.run(moved, *EVERY_5)
  assert_equals_uninterrupted(moved, straight)


def _namespaces() -> bool:
  try:
    return subprocess.run(["unshare", "-rm", "setpriv", "--bounding-set=-dac_override",
                           "true"], capture_output=True).returncode == 0
  except FileNotFoundError:
    return False


# On a tmpfs of its own: the child trains until its pause, the fault breaks the disk,
# the child goes on and fails at its next checkpoint; the fix repairs the disk and
# the same command runs again.
SCENARIO = r"""
set -u
mount -t tmpfs -o size=64m tmpfs "$DISK"
$AS "$PYTHON" -m tests.helpers "$PAUSE" "$MARKER" --workdir="$DISK/run" $ARGS \
    2> "$OUT/first.err" &
child=$!
while [ ! -e "$MARKER" ]; do kill -0 $child || exit 3; sleep 0.05; done
eval "$FAULT"
rm "$MARKER"
wait $child; echo $? > "$OUT/first.rc"
ls "$DISK/run/checkpoints" > "$OUT/checkpoints"
eval "$FIX"
$AS "$PYTHON" -m experiments.main --workdir="$DISK/run" $ARGS 2> "$OUT/second.err"
echo $? > "$OUT/second.rc"
cp "$DISK/run/results.json" "$DISK/run/metrics.jsonl" "$OUT/"
"""
# (fault, fix, runs as, the cause named, what to do.)
FAULTS = {
    # Every free byte taken by one file, removed to free the space.
    "full": ('dd if=/dev/zero of="$DISK/filler" bs=64k status=none 2>/dev/null || true',
             'rm "$DISK/filler"', "", "the disk is full",
             "Free space there (or move the workdir to a larger disk and pass its new "
             "--workdir)"),
    # The workdir made unwritable, for a run without root's power to write anyway (a
    # tmpfs busy with open files cannot be remounted read-only under a running job).
    "unwritable": ('chmod -R a-w "$DISK/run"', 'chmod -R u+w "$DISK/run"',
                   "setpriv --bounding-set=-dac_override,-dac_read_search --",
                   "permission is denied",
                   "Make it writable (or copy the workdir to a writable disk and pass its "
                   "new --workdir)"),
}


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces(), reason="needs unshare -rm (user namespaces) for a "
                    "tmpfs of its own, and setpriv")
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_disk_that_fails_writes_stops_in_one_line_and_the_rerun_completes(
    fault, tmp_path, straight):
  make, fix, run_as, cause, what_to_do = FAULTS[fault]
  disk, out = tmp_path / "disk", tmp_path / "out"
  disk.mkdir()
  out.mkdir()
  env = {**os.environ, "AEJAX_DATA_DIR": "", "PYTHON": sys.executable, "DISK": str(disk),
         "OUT": str(out), "MARKER": str(tmp_path / "paused"), "PAUSE": PAUSE,
         "ARGS": " ".join(EVERY_5), "FAULT": make, "FIX": fix, "AS": run_as}
  proc = subprocess.run(["unshare", "-rm", "bash", "-c", SCENARIO], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  first = (out / "first.err").read_text()
  assert (out / "first.rc").read_text().strip() == "1", first[-3000:]
  errors = [l for l in first.splitlines() if l.startswith("error:")]
  assert errors == [
      f"error: Writing the checkpoint of step 38 failed: {cause} ({disk / 'run'}). "
      f"{what_to_do}, then run the same command again: it resumes from the checkpoint "
      "of step 33."], first[-3000:]
  assert "Traceback" not in first  # orbax's threads say nothing after the one line
  assert (out / "checkpoints").read_text().split() == ["28", "33"]  # intact, no leftovers
  assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
  assert_equals_uninterrupted(out, straight)


# ------------------------------------------------------------ outside training


def test_prepare_data_cut_off_leaves_no_half_written_copy_and_the_rerun_prepares_it(
    tmp_path, cli):
  """SIGTERM while TFDS writes the copy (its temporary folder there), and at once
  after the launch: exit 75 and one line, nothing of the copy left; then the same
  command prepares it."""
  data_dir, sample = tmp_path / "tfds", ROOT / "aejax" / "sample"
  args = ("--dataset=mnist", f"--manual_dir={sample}", f"--data_dir={data_dir}")
  for when in ("writing", "launch"):
    child = subprocess.Popen([sys.executable, "-m", "experiments.prepare_data", *args],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "AEJAX_DATA_DIR": ""})
    if when == "writing":
      while not list(data_dir.glob("aejax_mnist/incomplete*")):
        assert child.poll() is None, child.stderr.read()[-3000:]
        time.sleep(0.01)
    else:  # as soon as it handles SIGTERM: its first lines (the interpreter's start
      # before them is the one moment a signal still ends a command with 143)
      while not cli.catching(child.pid, signal.SIGTERM):
        assert child.poll() is None, child.stderr.read()[-3000:]
        time.sleep(0.001)
    child.send_signal(signal.SIGTERM)
    stderr = child.communicate(timeout=120)[1]
    assert child.returncode == STOPPED, stderr[-3000:]
    assert [l for l in stderr.splitlines() if l.startswith("stopped:")] == [
        "stopped: Stopped by SIGTERM while preparing mnist (its unfinished copy removed): "
        "nothing to save yet. Run the same command again to prepare mnist (exit status "
        f"{STOPPED})."]
    assert "Traceback" not in stderr
    assert not list(data_dir.glob("aejax_mnist/*")), when  # neither a copy nor a part
  proc = cli.run_module("experiments.prepare_data", *args)
  assert "6000 train and 1000 test images prepared" in proc.stdout
  assert sorted(p.name for p in data_dir.glob("aejax_mnist/*")) == ["1.1.0"]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers are only set from the main thread")
def test_from_python_a_signal_raises_stopped_and_the_same_call_resumes(tmp_path,
                                                                       monkeypatch):
  """train_and_evaluate in this process, SIGUSR1 sent to itself: while the data loads
  (nothing saved, no workdir left), then after the first chunk of steps (a checkpoint
  of step 5); the handlers it set come back each time, and the same call finishes."""
  from aejax import data as data_lib, preemption, trainer
  from experiments.configs import vanilla
  config = vanilla.get_config()
  config.dataset, config.batch_size, config.num_epochs = "mnist_sample", 256, 1
  config.checkpoint_every_steps = 5
  before = signal.getsignal(signal.SIGUSR1)

  def signalled(function):
    def wrapped(*args, **kwargs):
      monkeypatch.undo()  # once
      os.kill(os.getpid(), signal.SIGUSR1)
      return function(*args, **kwargs)
    return wrapped

  monkeypatch.setattr(data_lib, "load", signalled(data_lib.load))
  with pytest.raises(preemption.Stopped, match=r"^Stopped by SIGUSR1 while loading the "
                     "data: nothing to save yet. Run the same command again to start or "
                     "resume the run"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # a failed start leaves no trace
  assert signal.getsignal(signal.SIGUSR1) is before
  monkeypatch.setattr(trainer, "check_finite", signalled(trainer.check_finite))
  with pytest.raises(preemption.Stopped) as stopped:
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert stopped.value.step == 5 and "the checkpoint of step 5 is saved" in str(stopped.value)
  assert signal.getsignal(signal.SIGUSR1) is before
  assert trainer.train_and_evaluate(config, str(tmp_path / "run"))["steps"] == 23


# Each run on a tmpfs of its own, of the size given: the run fills it wherever it
# gets to; then the tmpfs grows (space freed) and the same command runs again.
BY_SIZE = r"""
set -u
mount -t tmpfs -o size="$SIZE" tmpfs "$DISK"
"$PYTHON" -m experiments.main --workdir="$DISK/run" $ARGS 2> "$OUT/first.err"
echo $? > "$OUT/first.rc"
df -k --output=used "$DISK" | tail -1 > "$OUT/used"
mount -o remount,size=64m "$DISK"
"$PYTHON" -m experiments.main --workdir="$DISK/run" $ARGS 2> "$OUT/second.err"
echo $? > "$OUT/second.rc"
cp "$DISK/run/results.json" "$DISK/run/metrics.jsonl" "$OUT/"
"""
TWO_EPOCHS = (*BASE[:3], "--config.num_epochs=2")  # the results need more than the peak
ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


def on_a_tmpfs(size: str, folder: pathlib.Path) -> dict:
  """Runs BY_SIZE in ``folder``: what each run left there."""
  disk, out = folder / "disk", folder / "out"
  disk.mkdir(parents=True)
  out.mkdir()
  env = {**os.environ, "AEJAX_DATA_DIR": "", "PYTHON": sys.executable, "DISK": str(disk),
         "OUT": str(out), "SIZE": size, "ARGS": " ".join(TWO_EPOCHS)}
  proc = subprocess.run(["unshare", "-rm", "bash", "-c", BY_SIZE], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  read = lambda name: (out / name).read_text()
  return {"first": read("first.err"), "status": int(read("first.rc")),
          "rerun": int(read("second.rc")), "rerun_err": read("second.err"),
          "used": int(read("used")), "out": out}


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces(), reason="needs unshare -rm (user namespaces) for a "
                    "tmpfs of its own")
def test_a_full_disk_at_any_moment_is_one_line_every_time_and_the_rerun_completes(tmp_path):
  """tmpfs sizes that fill while the first checkpoint's arrays are written, about
  where it is finalised and the first metrics line follows, while the second's
  arrays are written, and while the pictures and results.json are (or just before;
  one of those may fit): one run at each (``AEJAX_FULL_DISK_REPEATS`` for more), side by
  side. Every run's stderr holds one line besides absl's log lines,
  and once the disk has room the same command ends where the uninterrupted run
  (on a tmpfs too, where it measures the space a whole run takes) ends."""
  straight = on_a_tmpfs("64m", tmp_path / "straight")
  assert straight["status"] == 0, straight["first"][-3000:]
  whole = straight["used"]  # KiB
  # A run's size varies by some 30 KiB (how tensorstore splits its data files): the
  # sizes near the end step down from the measured one, so that some fill the disk
  # at the pictures, some a little earlier, and one may fit.
  repeats = int(os.environ.get("AEJAX_FULL_DISK_REPEATS", 1))
  jobs = [(f"{k}k", tmp_path / f"{k}k-{i}") for i in range(repeats)
          for k in (whole // 4, whole // 2, 3 * whole // 4, whole - 8 - 12 * i)]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    runs = list(pool.map(lambda job: on_a_tmpfs(*job), jobs))
  where = collections.Counter()
  for (size, _), run in zip(jobs, runs):
    others = [l for l in run["first"].splitlines() if l and not ABSL_LINE.match(l)]
    if run["status"] == 0 and int(size[:-1]) > 3 * whole // 4:  # it fitted
      assert not others, (size, run["first"][-3000:])
      where["fitted"] += 1
    else:
      assert run["status"] == 1 and len(others) == 1, (size, run["first"][-3000:])
      (line,) = others
      assert "failed: the disk is full" in line and line.startswith("error: Writing "), line
      where[line.split(" failed")[0].removeprefix("error: Writing ")] += 1
    assert run["rerun"] == 0, run["rerun_err"][-3000:]
    assert_equals_uninterrupted(run["out"], straight["out"])
  print(f"\nfull disk, {whole} KiB a whole run, {len(runs)} runs: {dict(where)}")
  # The sizes did fill the disk at different moments.
  assert {"the checkpoint of step 23", "the checkpoint of step 46"} <= set(where), where
