"""Orbax checkpoints behind three functions: ``manager``, ``save``, ``restore_latest``.

A checkpoint is the whole train state (step, parameters, optimizer state), saved
synchronously and atomically by orbax (written to a temporary folder, then renamed),
so a run killed at any moment leaves its last complete checkpoint intact.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


def manager(workdir: str | pathlib.Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
  directory = pathlib.Path(workdir).absolute() / "checkpoints"
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any) -> None:
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, target: Any) -> Any | None:
  """The latest checkpoint, with ``target``'s structure, shapes and shardings; None if none."""
  step = mngr.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
