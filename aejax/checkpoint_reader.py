"""Reading a run's checkpoints without writing anything: the readers' path
(``analysis.load_run``, ``experiments.evaluate_run``, the codec, the report), safe
while the run trains.

A reader (``read_newest``) opens the checkpoints read-only (``read_only_manager``) and
never creates, moves or deletes anything: it reads the newest complete checkpoint
that verifies against its digests (``checkpoint.restore_variables``), starting over
from the newest if the trainer deletes the one it reads (``max_to_keep``), and falls
back past a damaged one, saying so. The trainer's own path, which moves damaged
checkpoints aside, is ``checkpoint.restore_newest``.
"""

from __future__ import annotations

import logging as std_logging
import os
import pathlib
from typing import Any, Callable, NamedTuple

import orbax.checkpoint as ocp
from absl import logging

from aejax.checkpoint import (ITEMS, UnreadableCheckpointsError, quiet_abandoned_reads,
                              read_meta, reason, refuse_older, restore_variables)

# Checkpoint folders a reader of this process is reading: orbax's warnings about a
# step that vanished while it listed them (the trainer's max_to_keep) are expected.
_READING: set[str] = set()


class _QuietReaders(std_logging.Filter):
  """Drops orbax's warnings that a reader expects: that its read-only manager is
  read-only, and that a step it was listing is gone (``read_newest`` reads again)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    message = str(record.msg)
    if message.startswith("Given directory is read only"):
      return False
    return not (message.startswith("Metadata file does not exist")
                and any(d in record.getMessage() for d in _READING))


def read_only_manager(workdir: str | pathlib.Path) -> ocp.CheckpointManager:
  """A manager that writes nothing: no folder made, no unfinished checkpoint (the
  trainer's save in progress) removed, no root metadata, nothing deleted. It sees only
  finished checkpoints (orbax renames a checkpoint's folder into place when complete)."""
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  if not any(isinstance(f, _QuietReaders) for f in logging.get_absl_logger().filters):
    logging.get_absl_logger().addFilter(_QuietReaders())
  options = ocp.CheckpointManagerOptions(read_only=True, create=False, max_to_keep=None,
                                         save_interval_steps=0,
                                         enable_async_checkpointing=False,
                                         cleanup_tmp_directories=False,
                                         save_root_metadata=False)
  return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


class Read(NamedTuple):
  """What ``read_newest`` read: the checkpoint's step, its variables and meta."""
  step: int
  variables: Any
  meta: dict


def training_pid(workdir: str | pathlib.Path) -> int | None:
  """The pid of the run training in ``workdir`` now, else None: the pid its lock file
  names (a run writes it when it takes the lock and empties the file when it lets
  go), if that process lives. Read without taking the lock, which would refuse a
  run starting at that instant."""
  try:
    pid = int((pathlib.Path(workdir) / ".lock").read_text().split()[0])
    os.kill(pid, 0)
  except (OSError, ValueError, IndexError):
    return None  # no lock file, no pid, or no such process: no run
  return pid


def read_newest(workdir: str | pathlib.Path, targets: Callable[[dict], Any],
                retries: int = 20) -> Read:
  """The variables of the newest complete checkpoint of ``workdir`` that verifies,
  read without writing anything there: the readers' path, safe while a run trains.

  ``targets(meta)`` gives the variables' abstract structure from the checkpoint's
  metadata. A checkpoint that fails while newer ones appear was deleted under the
  read by the trainer (``max_to_keep``): the read starts over from the newest, up to
  ``retries`` times. One that fails while it is still the newest is damaged: the one
  before it is read, and a warning names both; nothing is moved. FileNotFoundError
  when there is no checkpoint; UnreadableCheckpointsError when none can be read.
  """
  workdir = pathlib.Path(workdir)
  directory = workdir.absolute() / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(
        f"{workdir} holds no checkpoint, so no trained run; train one with "
        "`python -m experiments.main --config <config> --workdir <dir>`.")
  quiet_abandoned_reads()
  _READING.add(str(directory))
  mngr, damaged = None, {}
  try:
    while True:
      try:  # listing reads each step's metadata: a step deleted meanwhile fails it
        mngr = mngr or read_only_manager(workdir)
        mngr.reload()
      except (FileNotFoundError, NotADirectoryError):  # orbax raises either, by when
        if retries <= 0:
          raise
        retries -= 1
        continue
      steps = sorted(mngr.all_steps(), reverse=True)
      todo = [s for s in steps if s not in damaged]
      if not todo:
        break
      step = todo[0]
      refuse_older(mngr, step)
      try:
        variables, meta = _read(mngr, step, targets)
      except _TargetsError as e:
        raise e.__cause__ from None
      except Exception as e:  # noqa: BLE001 - whatever orbax raises for a broken file
        if retries > 0 and _moved_on(directory, step, steps[0]):
          retries -= 1  # the trainer deleted it under the read: read the newest again
          continue
        damaged[step] = e
        continue
      for bad, error in damaged.items():
        logging.warning("Checkpoint %d of %s cannot be read (%s); read the one before it, "
                        "step %d.", bad, workdir, reason(error), step)
      pid = training_pid(workdir)
      if pid is not None:
        logging.warning("%s is training (pid %d): read its newest complete checkpoint, step "
                        "%d.", workdir, pid, step)
      return Read(step, variables, meta)
  finally:
    _READING.discard(str(directory))
    if mngr is not None:
      mngr.close()
  if damaged:
    listed = "; ".join(f"{s}: {reason(e)}" for s, e in damaged.items())
    raise UnreadableCheckpointsError(f"No checkpoint in {directory} can be read ({listed}).")
  raise FileNotFoundError(
      f"{workdir} holds no complete checkpoint yet, so no trained run; wait for its "
      "first checkpoint, or train one with `python -m experiments.main --config <config> "
      "--workdir <dir>`.")


def _moved_on(directory: pathlib.Path, step: int, newest: int) -> bool:
  """Whether the trainer changed the checkpoints since a read of ``step`` began (when
  ``newest`` was the newest): ``step`` is gone, or a newer one has appeared."""
  found = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
  return step not in found or max(found, default=-1) > newest


class _TargetsError(Exception):
  """``targets`` failed: the caller's error (raised as it was), not the checkpoint's."""


def _read(mngr: ocp.CheckpointManager, step: int, targets: Callable[[dict], Any]):
  meta = read_meta(mngr, step)
  try:
    abstract = targets(meta)
  except Exception as e:  # noqa: BLE001
    raise _TargetsError() from e
  return restore_variables(mngr, step, abstract)
