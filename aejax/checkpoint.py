"""Orbax checkpoints of a run: parameters, optimizer state and the run's metadata.

Each checkpoint is one orbax ``Composite`` of three items, saved synchronously and
atomically (written to a temporary folder, then renamed), so a run killed at any
moment leaves its last complete checkpoint intact:

- ``variables``: the model's Flax variables (``{"params": ..., <state collections>}``),
  their own item, so a trained model restores without an optimizer
  (``restore_variables``);
- ``opt_state``: the optimizer's state;
- ``meta``: JSON: the config, the data record, the seconds trained, the history of
  the run's segments. The checkpoint, not metrics.jsonl, is the source of truth on
  resume.

The checkpoint's step number is the train state's step. ``restore_newest`` walks
back past checkpoints that cannot be read, moving them aside.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import shutil
import threading
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

ITEMS = ("variables", "opt_state", "meta")


def manager(workdir: str | pathlib.Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  # cleanup_tmp_directories: a write cut short (a kill, a full disk) leaves a
  # ``<step>.orbax-checkpoint-tmp`` folder, removed when the next run opens the manager.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


# How long a failed save waits for the writes it started to end (a full disk refuses
# them at once; a hung network file system would not).
SETTLE_SECONDS = 60.0


class _SettlingLoop(asyncio.SelectorEventLoop):
  """An event loop that lets its tasks end before it closes, and after a failure
  stays open.

  Orbax runs a save's coroutines in event loops of its own, one per thread
  (``asyncio_utils.run_sync``: ``new_event_loop``, ``run_until_complete``, ``close``),
  and when one write raises (the disk is full) it closes the loop while others
  still wait for tensorstore. Their writes then end in tensorstore's threads and
  call back into the closed loop, which prints ``RuntimeError: Event loop is
  closed``, and leave futures whose exceptions nobody retrieves (``Future exception
  was never retrieved``): after the run's one line, or not, as the race goes. Here
  every task ends first (tasks they start too) and has its exception retrieved: the
  save's own error is the one reported. A loop whose ``run_until_complete`` raised
  is then left open, not closed, so that a tensorstore operation no task waits for
  any more still calls back into a loop that takes it (and never runs it)."""

  _failed = False

  def run_until_complete(self, future):
    try:
      return super().run_until_complete(future)
    except BaseException:
      self._failed = True
      raise

  def close(self) -> None:
    if self.is_running() or self.is_closed():
      return super().close()
    deadline = time.monotonic() + SETTLE_SECONDS
    while (pending := asyncio.all_tasks(self)) and time.monotonic() < deadline:
      super().run_until_complete(asyncio.wait(pending, timeout=deadline - time.monotonic()))
      for task in pending:
        if task.done() and not task.cancelled():
          task.exception()
    if not self._failed:
      super().close()


class _SettlingPolicy(asyncio.DefaultEventLoopPolicy):
  # asyncio's policies are deprecated from Python 3.14; orbax takes no loop factory.

  def new_event_loop(self) -> asyncio.AbstractEventLoop:
    return _SettlingLoop()


def _join_started(before: set) -> None:
  """Waits for the threads started since ``before``, and for those they start in
  turn (orbax's commit threads start one that writes the metadata), at most
  ``SETTLE_SECONDS`` in all. Their errors are theirs to log: the save's is raised."""
  deadline = time.monotonic() + SETTLE_SECONDS
  while time.monotonic() < deadline:
    running = [t for t in threading.enumerate()
               if t not in before and t.is_alive() and t is not threading.current_thread()]
    if not running:
      return
    for thread in running:
      try:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
      except Exception:  # noqa: BLE001 - orbax's threads raise their error on join
        pass


def _settling(save):
  """``save`` with orbax's new event loops (in any thread) ``_SettlingLoop``s; the
  previous policy comes back when it returns or raises, once it has joined the
  threads it started."""
  @functools.wraps(save)
  def settling(*args, **kwargs):
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_SettlingPolicy())
    try:
      return save(*args, **kwargs)
    finally:
      asyncio.set_event_loop_policy(previous)
  return settling


@_settling
def save(mngr: ocp.CheckpointManager, step: int, variables: Any, opt_state: Any,
         meta: dict) -> None:
  """Saves checkpoint ``step`` and waits for it. A write that fails ends before this
  raises: every task of orbax's event loops has ended and had its exception retrieved
  (``_SettlingLoop``), and the writer threads it started are joined, so nothing of
  orbax's or asyncio's logs after the run has reported the failure; its unfinished
  folder is removed (so a full disk gets its space back)."""
  before = set(threading.enumerate())
  try:
    mngr.save(step, args=ocp.args.Composite(
        variables=ocp.args.StandardSave(variables),
        opt_state=ocp.args.StandardSave(opt_state), meta=ocp.args.JsonSave(meta)),
        force=True)
    mngr.wait_until_finished()
  except BaseException:
    _join_started(before)
    if jax.process_index() == 0:
      for unfinished in pathlib.Path(mngr.directory).glob(f"{step}.orbax-checkpoint-tmp*"):
        shutil.rmtree(unfinished, ignore_errors=True)
    raise


def _abstract(tree: Any) -> Any:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore(mngr: ocp.CheckpointManager, step: int, variables: Any, opt_state: Any
            ) -> tuple[Any, Any, dict]:
  """``(variables, opt_state, meta)`` of checkpoint ``step``, with the targets'
  structure, shapes and shardings (arrays or ``jax.ShapeDtypeStruct``s)."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(_abstract(variables)),
      opt_state=ocp.args.StandardRestore(_abstract(opt_state)),
      meta=ocp.args.JsonRestore()))
  return restored["variables"], restored["opt_state"], dict(restored["meta"])


def restore_variables(mngr: ocp.CheckpointManager, step: int, variables: Any
                      ) -> tuple[Any, dict]:
  """``(variables, meta)`` of checkpoint ``step``: no optimizer needed."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(_abstract(variables)), meta=ocp.args.JsonRestore()))
  return restored["variables"], dict(restored["meta"])


def read_meta(mngr: ocp.CheckpointManager, step: int) -> dict:
  """The ``meta`` item of checkpoint ``step`` alone (no arrays are read)."""
  restored = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  return dict(restored["meta"])


def _older_format(mngr: ocp.CheckpointManager, step: int) -> bool:
  folder = pathlib.Path(mngr.directory) / str(step)
  return (folder / "default").is_dir() and not (folder / "meta").exists()


def move_aside(mngr: ocp.CheckpointManager, step: int) -> pathlib.Path:
  """Moves checkpoint ``step`` out of the manager's sight, into ``checkpoints_corrupt/``
  beside it (never deleted); returns where it went."""
  source = pathlib.Path(mngr.directory) / str(step)
  aside = source.parent.parent / "checkpoints_corrupt"
  target, n = aside / str(step), 1
  while target.exists():
    target, n = aside / f"{step}.{n}", n + 1
  if jax.process_index() == 0:
    aside.mkdir(exist_ok=True)
    source.rename(target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"aejax: checkpoint {step} moved aside")
  mngr.reload()
  return target


class OlderCheckpointError(Exception):
  """A checkpoint written by an older aejax, before runs kept their metadata in it."""


def restore_newest(mngr: ocp.CheckpointManager, variables: Any, opt_state: Any,
                   check_meta: Callable[[int, dict], None] | None = None,
                   ) -> tuple[int, Any, Any, dict] | None:
  """``(step, variables, opt_state, meta)`` of the newest checkpoint that restores; None
  when there is none.

  Walks back from the newest checkpoint: one that cannot be read (a kill or a disk
  fault left it incomplete) is logged, moved aside (``move_aside``) and the one before
  it tried. ``check_meta(step, meta)`` runs before any array is read and may raise to
  refuse the run (a different config or data): that is not corruption, and nothing is
  moved.
  """
  for step in sorted(mngr.all_steps(), reverse=True):
    if _older_format(mngr, step):
      raise OlderCheckpointError(
          f"{mngr.directory} holds checkpoints written by an older aejax (without the "
          "run's metadata); they cannot be resumed. Use a new --workdir.")
    try:
      meta = read_meta(mngr, step)
    except Exception as e:  # noqa: BLE001 - whatever orbax raises for a broken file
      _corrupt(mngr, step, e)
      continue
    if check_meta is not None:
      check_meta(step, meta)
    try:
      restored = restore(mngr, step, variables, opt_state)
    except Exception as e:  # noqa: BLE001
      _corrupt(mngr, step, e)
      continue
    return (step, *restored)
  return None


def _corrupt(mngr: ocp.CheckpointManager, step: int, error: Exception) -> None:
  reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
  where = move_aside(mngr, step)
  logging.warning("Checkpoint %d cannot be restored (%s: %s); moved it to %s and trying "
                  "the one before it.", step, type(error).__name__, reason, where)
