"""``train_and_evaluate(config, workdir)``: train (or resume) a run, evaluate it, write
its results. ``fit`` is that call from Python (``aejax.train``): data may be arrays
in memory, and it returns the trained run.

The pieces come from ``engine.setup`` (model, objective, compiled functions), the
batches from ``inputs`` (the train set on the device, or streamed); the files from
``workdir`` (lock, config, results), ``writers.MetricWriter`` (metrics.jsonl,
TensorBoard, progress lines) and ``checkpoint`` (orbax: params, optimizer state and
the run's metadata). A resumed run takes its state, its seconds and its history from
the newest checkpoint that restores, at an epoch's end or inside one (``resume``).

Epochs train in chunks of steps (``engine.chunk_steps``); between two chunks a
checkpoint may fall due (``config.checkpoint_every_steps`` / ``_minutes``) and a
signal stops the run after saving one (``aejax.preemption``). Before training and
during the evaluation a signal stops the run at the next safe point between phases.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from aejax import checkpoint, config as config_lib, data as data_lib, engine, evaluate
from aejax import inputs, models as models_lib, preemption, resume as resume_lib, sweep
from aejax import workdir as workdir_lib
from aejax.step import NonFiniteLossError, check_finite  # noqa: F401 (re-exported)
from aejax.writers import MetricWriter

PROGRESS_SECONDS = 30.0  # a long epoch logs its progress this often

# What a user can cause and main.py reports in one line.
USER_ERRORS = (ValueError, data_lib.DataError, NonFiniteLossError, workdir_lib.WorkdirError,
               checkpoint.OlderCheckpointError, inputs.InputError)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       continue_with_changes: bool = False,
                       dataset: data_lib.Dataset | None = None) -> dict:
  """Trains (or resumes) the run in ``workdir``, evaluates it, writes its results.

  ``continue_with_changes``: a resumed run may change the optimizer's settings
  (``config.CONTINUE_KEYS``), e.g. a lower learning rate after a NaN stop.
  ``dataset``: the data to train on, in place of ``data.load(config)``'s (arrays
  from Python: ``fit``).

  Raises ``preemption.Stopped`` (an Exception, never a SystemExit) on a SIGTERM,
  SIGINT or SIGUSR1 in any phase, at the next safe point: while training, after
  saving a checkpoint at the step reached; before training (loading the data,
  building, compiling) or during the final evaluation, with nothing new to save.
  Its message says what is saved; calling again with the same arguments resumes (or
  finishes) the run. Signals are caught where this is called from the main thread
  (a script, a notebook's cell); elsewhere they act as before.
  """
  config_lib.checked(config)
  with preemption.Signals() as signals:
    signals.stop_here("while starting up", then="start or resume the run")
    with workdir_lib.Workdir(workdir) as work:
      return _run(config, work, signals, continue_with_changes, dataset)


def _run(config, work, signals: preemption.Signals, continue_with_changes: bool,
         dataset: data_lib.Dataset | None) -> dict:
  """``train_and_evaluate`` in its locked workdir, with a safe point between phases."""
  # ------------------------------------------------------------ data and model
  if dataset is None:
    with signals.interrupting("while loading the data"):
      dataset = data_lib.load(config)
  try:
    run = engine.setup(config, dataset, checked=True)
  except ValueError as e:  # a config its data or devices refuse
    raise config_lib.ConfigError(str(e)) from None
  plan = run.plan
  logging.info("Input: %s (config.input=%r: %s).", plan.input, config.input,
               plan.input_reason)
  signals.stop_here("while building the model")
  # ---------------------------------------------------------------- resume
  mngr = checkpoint.manager(work.path)
  writer = MetricWriter(work.path)
  try:
    state, meta = resume_lib.resume(run, mngr, work, dataset, continue_with_changes)
    writer.resume(meta["record"])
    models = _models(run, dataset)
    feed = inputs.open_input(run, dataset, steps_taken(state), meta.get("input"))
    saved = mngr.latest_step()
    signals.stop_here("before training", saved, "start" if saved is None else "resume")
    # ------------------------------------------------------------------ loop
    saver = _Saver(run, mngr, work, feed, steps_taken(state))
    state = _train(run, feed, state, meta, models, saver, writer, signals)
  finally:
    writer.close()
    mngr.close()
  # ------------------------------------------------------------- evaluation
  # The last checkpoint is saved: a stop from here on re-evaluates it.
  stop = lambda where: signals.stop_here(where, steps_taken(state),
                                         "evaluate it and write the results")
  stop("after training")
  with work.writing("the results", "it evaluates the last checkpoint again"):
    return _finish(run, state, meta, dataset, models, work, stop)


class _Saver:
  """Saves the run's checkpoints: at most one per step, when due
  (``config.checkpoint_every``, ``checkpoint_every_steps`` / ``_minutes``), and a
  write the storage refuses as one line (``Workdir.writing``)."""

  def __init__(self, run: engine.Run, mngr, work, feed, step: int):
    self.work, self._mngr, self._feed = work, mngr, feed
    self.cadence = preemption.Cadence(run.config.checkpoint_every_steps,
                                      run.config.checkpoint_every_minutes, step)

  def save(self, state, meta: dict) -> None:
    step, newest = steps_taken(state), self._mngr.latest_step()
    if newest == step:
      return
    meta["input"] = self._feed.position()
    resumes = ("it starts from the beginning" if newest is None else
               f"it resumes from the checkpoint of step {newest}")
    with self.work.writing(f"the checkpoint of step {step}", resumes):
      checkpoint.save(self._mngr, step, state.variables, state.opt_state, meta)
    self.cadence.saved(step)


def _train(run: engine.Run, feed, state, meta: dict, models, saver: _Saver, writer,
           signals: preemption.Signals):
  """The epochs from where ``state`` stands, chunk by chunk; between two chunks a
  checkpoint may fall due and a signal stops the run (every process at the same
  step: ``preemption.agree``). A checkpoint inside an epoch keeps that epoch's
  metrics so far, so a resumed epoch's metrics line is the uninterrupted one's."""
  config, steps = run.config, run.plan.steps_per_epoch
  examples = steps * config.batch_size
  for epoch in range(steps_taken(state) // steps, config.num_epochs):
    so_far = meta.pop("epoch_so_far", None) or {"history": None, "seconds": 0.0}
    parts = [] if so_far["history"] is None else [
        {k: np.asarray(v, np.float32) for k, v in so_far["history"].items()}]
    seconds, first = so_far["seconds"], steps_taken(state) - epoch * steps
    last_report = t0 = time.perf_counter()
    for state, history in feed.chunks(state, epoch, first):
      history = jax.device_get(history)  # waits for the chunk
      step = steps_taken(state)
      check_finite(history, step - len(history["loss"]))
      parts.append(history)
      elapsed, t0 = time.perf_counter() - t0, time.perf_counter()
      seconds += elapsed
      meta["train_seconds"] += elapsed
      if step % steps == 0:
        break  # the epoch's end: below
      stop, due = preemption.agree(signals.received is not None, saver.cadence.due(step))
      if stop or due:
        meta["epoch_so_far"] = {"history": {k: np.concatenate([p[k] for p in parts]).tolist()
                                            for k in parts[0]}, "seconds": seconds}
        saver.save(state, meta)
        del meta["epoch_so_far"]
      if stop:
        raise preemption.Stopped(signals.received, step,
                                 f"epoch {epoch + 1}, step {step - epoch * steps} of {steps}")
      if time.perf_counter() - last_report > PROGRESS_SECONDS:
        last_report = time.perf_counter()
        logging.info("  step %d/%d of the epoch  loss %.5f", step - epoch * steps, steps,
                     float(np.mean(history["loss"][-1])))
      t0 = time.perf_counter()  # a checkpoint's write is not training time
    history = jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
    meta["record"] = {"epoch": epoch + 1, "step": steps_taken(state),
                      **_epoch_metrics(run, models, state, history), "seconds": seconds,
                      "train_seconds": meta["train_seconds"],
                      "examples_per_second": examples / seconds}
    stop, due = preemption.agree(signals.received is not None,
                                 saver.cadence.due(steps_taken(state)))
    if (stop or due or (epoch + 1) % config.checkpoint_every == 0
        or epoch + 1 == config.num_epochs):
      saver.save(state, meta)
    with saver.work.writing("the metrics", "it resumes from the last checkpoint"):
      writer.write_epoch(meta["record"], config.num_epochs)
    if stop and epoch + 1 < config.num_epochs:
      raise preemption.Stopped(signals.received,
                               steps_taken(state), f"the end of epoch {epoch + 1}")
  return state


def _models(run: engine.Run, dataset) -> list[tuple[engine.Run, object]]:
  """``(run, evaluator)`` of each model trained: the run, or each sweep member as a run
  of its own (so that it is evaluated exactly as that run would be)."""
  if run.plan.members is None:
    return [(run, run.evaluator(dataset.test_images, dataset.test_labels, dataset.scale))]
  out, shared = [], {}
  for i in range(run.plan.members.size):
    member = run.member(i)
    # Members whose objective and corruption agree share one compiled evaluation.
    same = (tuple(member.objective.weights.items()), member.config.corruption.level)
    if same not in shared:
      shared[same] = member.evaluator(dataset.test_images, dataset.test_labels, dataset.scale)
    out.append((member, shared[same].with_key(member.keys.eval)))
  return out


def member_variables(run: engine.Run, state, i: int):
  """The Flax variables of member ``i`` of a sweep's state (on the host); a single
  model's state's own variables when ``run`` is not a sweep."""
  if run.plan.members is None:
    return state.variables
  return jax.tree.map(lambda x: np.asarray(x[i]), state.variables)


def steps_taken(state) -> int:
  """The optimizer steps taken (a sweep's members step together)."""
  return int(np.max(state.step))


def _epoch_metrics(run: engine.Run, models, state, history) -> dict:
  """The epoch's record: train means and test loss terms (a sweep's means over its
  members, and each member's)."""
  if run.plan.members is None:
    return {"train": {k: float(np.mean(v)) for k, v in history.items()},
            "test": models[0][1].loss_terms(state.variables)}
  members = [{"train": {k: float(np.mean(v[:, i])) for k, v in history.items()},
              "test": evaluator.loss_terms(member_variables(run, state, i))}
             for i, (_, evaluator) in enumerate(models)]
  mean = lambda split: {k: float(np.mean([m[split][k] for m in members]))
                        for k in members[0][split]}
  return {"train": mean("train"), "test": mean("test"), "members": members}


def _finish(run: engine.Run, state, meta: dict, dataset, models, work,
            stop: Callable[[str], None]) -> dict:
  """The pictures, then results.json (the last file a run writes); for a sweep, the
  top-level figures and pictures are member 0's, beside every member's (``members``)
  and their ``summary``. ``stop(where)``: a safe point (``Signals.stop_here``), after
  each model's evaluation, the last one before the pictures."""
  config, members = run.config, run.plan.members
  coder = None
  if hasattr(run.model, "encode") and hasattr(run.model, "decode"):
    coder = (models_lib.compiled_apply(run.model, "encode"),
             models_lib.compiled_apply(run.model, "decode"))
  figures = []
  for i, (r, evaluator) in enumerate(models):
    figures.append(evaluate.model_figures(r, member_variables(run, state, i), evaluator,
                                          dataset, coder))
    stop("during the final evaluation")
  results = {
      "name": config.name,
      "model": config.model.to_dict(),
      "dataset": dataset.record(),
      "epochs": steps_taken(state) // run.plan.steps_per_epoch,
      "steps": steps_taken(state),
      "losses": run.objective.weights,
      "corruption": config.corruption.to_dict(),
      **run.record(),
      "train_seconds": meta["train_seconds"],
      "segments": meta["segments"],
      **figures[0],
  }
  if members is not None:
    results["sweep"] = config.sweep
    results["members"] = [{"member": i, "overrides": overrides, **figures[i]}
                          for i, overrides in enumerate(members.overrides)]
    results["summary"] = sweep.summary(results["members"])
  if work.writes and len(dataset.image_shape) == 3:  # pictures of images, not vectors
    # matplotlib only here: a run refused or stopped before this point never loads it.
    from aejax import plots  # noqa: PLC0415
    first, evaluator = models[0]
    variables = member_variables(run, state, 0)
    plots.reconstruction_grid(evaluator.grid_rows(variables),
                              work.path / "reconstructions.png")
    if first.family.figures is not None:
      first.family.figures(first.model, variables, dataset,
                           jax.random.fold_in(first.keys.eval, 3), work.path)
  work.write_json("results.json", results)
  psnr = results["test"].get("psnr_db")
  logging.info("Wrote %s: test mse %.5f%s%s.", work.path / "results.json",
               results["test"]["mse"], "" if psnr is None else f", psnr {psnr:.2f} dB",
               "" if members is None else f" (member 0 of {members.size})")
  return results


# ------------------------------------------------------------------ from Python


def _dataset(config, data) -> data_lib.Dataset:
  """``data`` of ``fit`` as a Dataset: one already made (``data.from_arrays``), a dict
  of ``from_arrays``' arguments, a ``(train, test)`` pair or the train array alone
  (its test split held out by ``config.test_fraction``), standardised as
  ``config.standardize`` says."""
  if isinstance(data, data_lib.Dataset):
    made = bool(data.details.get("standardize", False))
    if made != config.standardize:
      raise config_lib.ConfigError(
          f"config.standardize={config.standardize} but data= was made with "
          f"standardize={made}: make it with standardize={config.standardize}, or give "
          "the arrays themselves.")
    return data
  arrays = (data if isinstance(data, dict) else
            dict(zip(("train", "test"), data)) if isinstance(data, (tuple, list)) else
            {"train": data})
  unknown = sorted(set(arrays) - {"train", "test", "train_labels", "test_labels", "name"})
  if unknown or "train" not in arrays:
    raise data_lib.DataError(
        f"data= holds {unknown or 'no train array'}; give an array, (train, test), or a dict "
        "of train, test, train_labels, test_labels and name.")
  return data_lib.from_arrays(**arrays, standardize=config.standardize,
                              test_fraction=config.test_fraction)


def fit(config: ml_collections.ConfigDict, workdir: str, *, data=None,
        continue_with_changes: bool = False):
  """``aejax.train``: ``train_and_evaluate`` from Python, returning the trained run
  (``aejax.trained.Trained``; its parameters are restored when first used).

  ``data``: arrays in memory to train on (``_dataset``), recorded as
  ``config.dataset='arrays[:<name>]'`` with their fingerprint, so that a resume
  with the same arrays continues and one with others is refused; None: the data
  ``config.dataset`` names. The arrays are checked before the workdir is touched
  (``data.DataError``), the config against them before any compute
  (``config.ConfigError``; a workdir the run made is removed again).
  """
  from aejax import trained  # the layer above: the run as a Python object
  dataset = None
  if data is not None:
    dataset = _dataset(config, data)
    config = copy.deepcopy(config)
    config.dataset = dataset.name
  results = train_and_evaluate(config, workdir, continue_with_changes=continue_with_changes,
                               dataset=dataset)
  return trained.Trained(workdir, results=results)
