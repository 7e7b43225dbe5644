"""What a run goes on from: the newest checkpoint that restores, once its config and
data are checked against the run's (``resume``), or a fresh start; the segments of a
run's history that a resume with changes adds."""

from __future__ import annotations

import jax
from absl import logging

from aejax import checkpoint, config as config_lib, data as data_lib, engine
from aejax import workdir as workdir_lib


class DataChangedError(workdir_lib.WorkdirError):
  """A resumed run found other data than the run was trained on."""


def schedule_record(config) -> dict:
  """The keys that make a segment's learning-rate schedule, as its history records them."""
  keys = ("schedule", "learning_rate", "warmup_epochs", "final_lr_fraction", "num_epochs")
  return {k: config[k] for k in keys}


def check_data(work, saved: dict, dataset: data_lib.Dataset) -> None:
  """Refuses, in one line, data other than what the checkpoint's ``saved`` record
  names (its fingerprint), saying what differs and how to point the run at its own."""
  now = dataset.record()
  if saved.get("fingerprint") == now["fingerprint"]:
    return
  if saved.get("source") == "arrays":
    raise DataChangedError(
        f"{work.path} was trained on other arrays than data= gives now (fingerprint "
        f"{saved.get('fingerprint', '')[:12]}, {saved.get('n_train')} train rows; now "
        f"{now['fingerprint'][:12]}, {now['n_train']}): give the arrays it was trained on, "
        "or a new workdir for these.")
  differs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}"
                      for k in ("name", "source", "location", "n_train", "n_test")
                      if saved.get(k) != now[k]) or "the images themselves"
  raise DataChangedError(
      f"{work.path} was trained on other data than this command found ({differs}). "
      f"Point the run at its data again (--config.data_dir={saved.get('location')}, or "
      f"{data_lib.ENV_DATA_DIR} / the TFDS data dir as before), or use a new --workdir "
      "for this data.")


def resume(run: engine.Run, mngr, work, dataset, continue_with_changes: bool):
  """The state and metadata to go on from: the newest checkpoint that restores, after
  checking that its config and data allow it; else a fresh start."""
  now = config_lib.json_dict(run.config)
  steps_per_epoch = run.plan.steps_per_epoch

  def check(step: int, meta: dict) -> None:
    changes = workdir_lib.config_changes(config_lib.upgrade(meta["config"]), now)
    # Epochs begun: a checkpoint inside an epoch needs that epoch to end.
    workdir_lib.check_changes(work.path, changes, -(-step // steps_per_epoch),
                              continue_with_changes)
    check_data(work, meta["data"], dataset)

  restored = checkpoint.restore_newest(mngr, run.state.variables, run.state.opt_state, check)
  if restored is None:
    saved = work.saved_config()
    if saved is not None:  # a run that stopped before its first checkpoint
      workdir_lib.check_changes(
          work.path, workdir_lib.config_changes(config_lib.upgrade(saved), now), 0,
          continue_with_changes)
    meta = {"config": now, "original_config": now, "data": dataset.record(),
            "train_seconds": 0.0, "record": None,
            "segments": [{"first_epoch": 1, "changes": {}, "schedule": schedule_record(run.config)}]}
    work.write_json("config.json", now)
    return run.state, meta

  step, variables, opt_state, meta = restored
  params = variables.pop("params")
  state = run.state.replace(step=jax.numpy.full(run.state.step.shape, step, jax.numpy.int32),
                            params=params,
                            opt_state=opt_state, model_state=variables)
  changes = workdir_lib.config_changes(config_lib.upgrade(meta["config"]), now)
  if changes:
    segment = {"first_epoch": step // steps_per_epoch + 1, "changes": changes,
               "schedule": schedule_record(run.config)}
    if step % steps_per_epoch:  # resumed inside an epoch
      segment["first_step"] = step + 1
    meta["segments"].append(segment)
    logging.info("Resuming with changes %s (recorded in the run's history).", changes)
  meta["config"] = now
  try:
    saved = work.saved_config()
  except workdir_lib.WorkdirError:  # damaged: the checkpoint's copy replaces it
    saved = None
    logging.warning("%s could not be read; restored it from the checkpoint.", work.config_path)
  if saved != meta["original_config"]:
    work.write_json("config.json", meta["original_config"])  # deleted or damaged
  logging.info("Resumed from the checkpoint at step %d in %s.", step, work.path)
  return state, meta
