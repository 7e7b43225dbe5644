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

The checkpoint's step number is the train state's step.

**Verified.** ``meta`` also holds a SHA-256 of each array's bytes (``digests``: one per
leaf of ``variables`` and of ``opt_state``); every restore checks the arrays it read
against them, so damaged bytes that still decompress are caught, not trained on.
Checkpoints written before digests are accepted, with a note in the log.

**The trainer and the readers.** The trainer's ``manager`` (under the workdir's lock)
removes unfinished ``*.orbax-checkpoint-tmp`` folders, and ``restore_newest`` walks back
past checkpoints that cannot be restored, moving them aside. A reader
(``checkpoint_reader.read_newest``) opens the checkpoints read-only and never creates,
moves or deletes anything.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import pathlib
import shutil
import sys
import threading
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from aejax.workdir import WorkdirError

ITEMS = ("variables", "opt_state", "meta")


def manager(workdir: str | pathlib.Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """The trainer's manager: it creates ``checkpoints/`` and cleans up. Open it only
  under the workdir's lock (``workdir.Workdir``); readers use ``checkpoint_reader.read_only_manager``."""
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  # cleanup_tmp_directories: a write cut short (a kill, a full disk) leaves a
  # ``<step>.orbax-checkpoint-tmp`` folder, removed when the next run opens the manager.
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False,
                                         cleanup_tmp_directories=True)
  mngr = ocp.CheckpointManager(directory, options=options, item_names=ITEMS)
  # orbax removes those folders in a thread of its own, which close() does not wait
  # for: a run that stops at once (data it refuses) would exit while it runs, and the
  # interpreter's shutdown print that thread's traceback after the run's one line.
  pending = getattr(mngr, "_cleanup_tmp_directory_future", None)
  if pending is not None:
    pending.result()
  return mngr


# ------------------------------------------------------------------ digests


class DigestMismatchError(Exception):
  """A restored array's bytes differ from those its checkpoint recorded."""


def _leaf_digest(leaf: Any) -> str | None:
  """SHA-256 of one array's bytes (C order); None for an array this process holds
  only part of (a sharded array over several processes), which is not checked."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    if not leaf.is_fully_replicated:
      return None
    leaf = leaf.addressable_data(0)
  array = np.ascontiguousarray(np.asarray(leaf))
  return hashlib.sha256(array.reshape(-1).view(np.uint8).data).hexdigest()


def digests(tree: Any) -> dict[str, str | None]:
  """``{leaf path: SHA-256 of its bytes}`` of a pytree of arrays (read to the host)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): _leaf_digest(leaf) for path, leaf in leaves}


def _verify(step: int, meta: dict, item: str, tree: Any) -> None:
  """Raises DigestMismatchError if ``tree`` (item ``item`` as restored) is not what
  checkpoint ``step`` recorded; a checkpoint older than digests passes, noted."""
  recorded = meta.get("digests", {}).get(item)
  if recorded is None:
    logging.info("Checkpoint %d predates array digests: its %s are not verified.", step, item)
    return
  found = digests(tree)
  if found.keys() != recorded.keys():
    raise DigestMismatchError(f"its {item} hold other arrays than it recorded")
  bad = [k for k, d in found.items() if d is not None and recorded[k] is not None
         and d != recorded[k]]
  if bad:
    raise DigestMismatchError(f"the bytes of {len(bad)} of its {item} arrays differ from "
                              f"those saved ({item}{bad[0]}): the files are damaged")


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
  meta = {**meta, "digests": {"variables": digests(variables),
                               "opt_state": digests(opt_state)}}
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
  structure, shapes and shardings (arrays or ``jax.ShapeDtypeStruct``s); arrays whose
  bytes differ from the recorded digests raise DigestMismatchError."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(_abstract(variables)),
      opt_state=ocp.args.StandardRestore(_abstract(opt_state)),
      meta=ocp.args.JsonRestore()))
  meta = dict(restored["meta"])
  _verify(step, meta, "variables", restored["variables"])
  _verify(step, meta, "opt_state", restored["opt_state"])
  meta.pop("digests", None)
  return restored["variables"], restored["opt_state"], meta


def restore_variables(mngr: ocp.CheckpointManager, step: int, variables: Any
                      ) -> tuple[Any, dict]:
  """``(variables, meta)`` of checkpoint ``step``, verified: no optimizer needed."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(_abstract(variables)), meta=ocp.args.JsonRestore()))
  meta = dict(restored["meta"])
  _verify(step, meta, "variables", restored["variables"])
  meta.pop("digests", None)
  return restored["variables"], meta


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


class UnreadableCheckpointsError(WorkdirError):
  """A workdir holds checkpoints, and none of them can be restored."""


def quiet_abandoned_reads() -> None:
  """Keeps the leftovers of an array read that orbax abandoned (one array of a
  damaged checkpoint failed; the other reads' coroutines and tensorstore's callbacks
  into the closed event loop end later) off stderr: the failure itself is reported
  in one line. Any other unraisable error is printed as before."""
  previous = sys.unraisablehook
  if getattr(previous, "aejax_quiet", False):
    return

  def hook(unraisable) -> None:
    name = getattr(getattr(unraisable.object, "cr_code", None), "co_name", "")
    loop_closed = (isinstance(unraisable.exc_value, RuntimeError)
                   and str(unraisable.exc_value) == "Event loop is closed")
    if name != "_read_array_index_and_device_put" and not loop_closed:
      previous(unraisable)

  hook.aejax_quiet = True
  sys.unraisablehook = hook


def reason(error: BaseException) -> str:
  """The first line of the innermost error ``error`` wraps: the file's fault itself
  (orbax wraps tensorstore's "Data corruption detected" in a page of its spec)."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = str(error).strip()
  return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


def refuse_older(mngr: ocp.CheckpointManager, step: int) -> None:
  """OlderCheckpointError if checkpoint ``step`` was written by an older aejax."""
  if _older_format(mngr, step):
    raise OlderCheckpointError(
        f"{mngr.directory} holds checkpoints written by an older aejax (without the "
        "run's metadata); they cannot be resumed. Use a new --workdir.")


def restore_newest(mngr: ocp.CheckpointManager, variables: Any, opt_state: Any,
                   check_meta: Callable[[int, dict], None] | None = None,
                   ) -> tuple[int, Any, Any, dict] | None:
  """``(step, variables, opt_state, meta)`` of the newest checkpoint that restores and
  verifies; None when there is none. The trainer's path, under the workdir's lock.

  Walks back from the newest checkpoint: one that cannot be read (a kill or a disk
  fault left it incomplete, its arrays' bytes differ from their digests) is logged
  and moved aside (``move_aside``) once an older one restores. If none restores,
  UnreadableCheckpointsError, and nothing is moved. ``check_meta(step, meta)`` runs
  before any array is read and may raise to refuse the run (a different config or
  data): that is not corruption, and nothing is moved.
  """
  quiet_abandoned_reads()
  failed = {}
  for step in sorted(mngr.all_steps(), reverse=True):
    refuse_older(mngr, step)
    try:
      meta = read_meta(mngr, step)
    except Exception as e:  # noqa: BLE001 - whatever orbax raises for a broken file
      failed[step] = e
      continue
    if check_meta is not None:
      check_meta(step, meta)
    try:
      restored = restore(mngr, step, variables, opt_state)
    except Exception as e:  # noqa: BLE001
      failed[step] = e
      continue
    for bad, error in failed.items():
      _corrupt(mngr, bad, error, step)
    return (step, *restored)
  if failed:
    listed = "; ".join(f"{s}: {reason(e)}" for s, e in failed.items())
    raise UnreadableCheckpointsError(
        f"No checkpoint in {mngr.directory} can be restored ({listed}); nothing was "
        "changed. To train from the start, move that folder away (or use a new --workdir).")
  return None


def _corrupt(mngr: ocp.CheckpointManager, step: int, error: Exception, used: int) -> None:
  where = move_aside(mngr, step)
  logging.warning("Checkpoint %d cannot be restored (%s); moved it to %s and resumed from "
                  "the one before it, step %d.", step, reason(error), where, used)
