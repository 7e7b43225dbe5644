"""The command line in a subprocess, for the tests; they reach it through conftest's
``cli`` fixture, so that no test file imports another.

Every command runs with this interpreter from the project root, its output captured as
text, and with ``AEJAX_DATA_DIR`` emptied: it trains on the data the test names (the
bundled sample unless told otherwise), never on the folder the developer's own runs
use. ``devices`` forces that many CPU devices through ``JAX_NUM_CPU_DEVICES`` (JAX fixes
its device count when it starts, hence a subprocess per count); ``None`` leaves the
caller's environment as it is. ``env`` adds or overrides variables last.

Run as ``python -m tests.helpers <pause point> <marker> <experiments.main flags>``, this
module is the child process of the SIGKILL and signal tests: the CLI with a pause at
one instant, where it touches the marker file and waits, until the test kills it or
(for a signal) deletes the marker to let it go on.
"""

import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _env(devices: int | None, env: dict | None) -> dict:
  forced = {} if devices is None else {"JAX_NUM_CPU_DEVICES": str(devices)}
  return {**os.environ, "AEJAX_DATA_DIR": "", **forced, **(env or {})}


class Cli:
  """``python -m experiments.main`` (and the other commands) in a subprocess."""

  @staticmethod
  def catching(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler of its own for ``signum`` (Linux's
    /proc/<pid>/status ``SigCgt`` mask); False while it has none yet, or has ended."""
    try:
      status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
      return False
    mask = next(l.split()[1] for l in status.splitlines() if l.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signum - 1) & 1)

  @staticmethod
  def optimised() -> dict:
    """The environment overrides that compile at LLVM's optimisation level 2 (in place
    of any level XLA_FLAGS sets), for the commands that train conv models: conftest's
    level 0 compiles faster, but runs their convolutions slower."""
    flags = re.sub(r"--xla_backend_optimization_level=\S*", "",
                   os.environ.get("XLA_FLAGS", ""))
    return {"XLA_FLAGS": " ".join([*flags.split(), "--xla_backend_optimization_level=2"])}

  def run_module(self, module: str, *args: str, devices: int | None = None,
                 env: dict | None = None, check: bool = True,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m <module> <args>``, waited for; with ``check`` a non-zero exit fails
    the test with the command and the end of its stderr."""
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(devices, env), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
      raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc

  def run(self, workdir, *args: str, devices: int | None = None, env: dict | None = None,
          check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``experiments.main --workdir=<workdir> <args>``, waited for (see ``run_module``)."""
    return self.run_module("experiments.main", f"--workdir={workdir}", *args,
                           devices=devices, env=env, check=check, timeout=timeout)

  def run_config(self, config: str, workdir, *overrides: str, check: bool = True,
                 env: dict | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    """``experiments/configs/<config>.py`` for one epoch on the bundled sample, then
    ``overrides`` (a later flag wins, so they may change the epochs or the data)."""
    return self.run_module(
        "experiments.main", f"--config=experiments/configs/{config}.py",
        f"--workdir={workdir}", "--config.dataset=mnist_sample", "--config.num_epochs=1",
        *overrides, env=env, check=check, timeout=timeout)

  def start(self, workdir, *args: str, devices: int | None = None,
            env: dict | None = None, log: pathlib.Path | None = None) -> subprocess.Popen:
    """``experiments.main --workdir=<workdir> <args>`` in the background: a Popen whose
    stdout and stderr are text pipes (read them with ``communicate``), or with ``log``
    both go to that file (for a child left alone a while: a pipe nobody reads blocks
    it once full)."""
    cmd = [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", *args]
    if log is not None:
      with open(log, "w") as f:
        return subprocess.Popen(cmd, cwd=ROOT, env=_env(devices, env), stdout=f,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(devices, env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  def start_child(self, workdir, point: str, marker: pathlib.Path, *args: str,
                  devices: int | None = None, env: dict | None = None,
                  output: bool = False) -> subprocess.Popen:
    """``experiments.main --workdir=<workdir> <args>`` in the background, paused at
    ``point`` (see ``_child``) for a SIGKILL or a signal; its output is discarded, or
    with ``output`` kept in text pipes (read them with ``communicate``)."""
    cmd = [sys.executable, "-m", "tests.helpers", point, str(marker),
           f"--workdir={workdir}", *args]
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(devices, env), stdout=pipe,
                            stderr=pipe, text=True)

  @staticmethod
  def wait_for(marker: pathlib.Path, child: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``child`` has touched ``marker``: at its pause point, alive."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
      assert child.poll() is None, "the child exited before reaching its pause point"
      assert time.monotonic() < deadline, "the child never reached its pause point"
      time.sleep(0.05)


def _child(argv: list[str]) -> None:
  """Runs experiments.main with a pause at ``point:N`` that touches ``marker``:
  'checkpoint_write:N' while orbax commits the Nth checkpoint, 'after_checkpoint:N'
  between epoch N's checkpoint and its metrics line, 'save:N' before the Nth
  checkpoint's write begins (the steps since the last one trained, not saved; all
  three sleep until killed);
  'chunk:N' after the Nth chunk of steps inside an epoch (the run's checks of it
  done, the next chunk not started), until the marker is deleted; 'prepare' while it
  prepares its data's copy (decoded, under the copy's lock, not yet finished), until
  the marker is deleted; 'none' never."""
  point, marker = argv[0], pathlib.Path(argv[1])
  sys.argv = [sys.argv[0], *argv[2:]]
  name, _, epoch = point.partition(":")

  def pause():
    marker.touch()
    time.sleep(3600)

  def pause_until_released():
    marker.touch()
    while marker.exists():
      time.sleep(0.02)

  if name == "checkpoint_write":  # orbax's commit: the rename of the temporary folder
    from orbax.checkpoint._src.path import async_path
    rename, seen = async_path.rename, []

    async def paused_rename(src, dst):
      if ".orbax-checkpoint-tmp" in str(src):
        seen.append(src)
        if len(seen) == int(epoch):
          pause()
      return await rename(src, dst)

    async_path.rename = paused_rename
  elif name == "after_checkpoint":  # the checkpoint is saved, the metrics line not yet
    from aejax import writers
    write_epoch = writers.MetricWriter.write_epoch

    def paused_write_epoch(self, record, num_epochs):
      if record["epoch"] == int(epoch):
        pause()
      return write_epoch(self, record, num_epochs)

    writers.MetricWriter.write_epoch = paused_write_epoch
  elif name == "save":  # trained past the last checkpoint, the next not yet written
    from aejax import checkpoint
    save, calls = checkpoint.save, []

    def paused_save(*args, **kwargs):
      calls.append(1)
      if len(calls) == int(epoch):
        pause()
      return save(*args, **kwargs)

    checkpoint.save = paused_save
  elif name == "chunk":  # between two chunks of an epoch
    from aejax import inputs
    count = [0]

    def paused(chunks):
      def paused_chunks(self, *args):
        for item in chunks(self, *args):
          yield item  # back here when the run asks for the next chunk of the epoch
          count[0] += 1
          if count[0] == int(epoch):
            pause_until_released()
      return paused_chunks

    for kind in (inputs.DeviceInput, inputs.StreamInput):
      kind.chunks = paused(kind.chunks)
  elif name == "prepare":  # the copy written under its temporary name, not finished
    from aejax.data import prepared
    finish = prepared.Writer.finish

    def paused_finish(self, *args, **kwargs):
      pause_until_released()
      return finish(self, *args, **kwargs)

    prepared.Writer.finish = paused_finish
  from absl import app
  from experiments import main
  app.run(main.main, flags_parser=main.parse_flags)


if __name__ == "__main__":
  _child(sys.argv[1:])
