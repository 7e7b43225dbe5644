"""The refill search's loop (``Driver``): asks Optuna for trials, fills the slots,
trains them an epoch at a time, reports at rungs, prunes and refills; saves the slots
on a signal and resumes them; writes search.json and tests the winner once."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from typing import Any

import jax.numpy as jnp
import numpy as np
from absl import logging

from aejax import checkpoint, engine, preemption, sweep
from aejax.tuner import study as study_lib
from aejax.tuner.slots import Slots
from aejax.tuner.space import SearchError, import_optuna, space_string


@dataclasses.dataclass
class Slot:
  trial: Any = None  # optuna.trial.Trial, None when the slot is free
  epochs: int = 0  # epochs this trial has trained


class Driver:
  """The search's loop: asks, fills, trains, reports, prunes, refills (``strategy=
  'refill'``; ``pbt.Population`` trains a population instead)."""

  requeue_lost = True  # a trial a killed process left running is trained again

  def __init__(self, pool: Slots, study, space, trials: int, work, options, rungs):
    self.pool, self.study, self.space, self.trials = pool, study, space, trials
    self.work, self.options, self.rungs = work, options, rungs
    self.slots = [Slot() for _ in range(pool.size)]
    self.mngr = checkpoint.manager(work / "slots", max_to_keep=1)
    self.tick = 0  # epochs this workdir's slots have trained, over every segment
    self.best = None  # (value, trial number) of the best trial this workdir finished
    self.num_epochs = pool.base.num_epochs
    # pbt: each slot's copies, [{epoch, trial, from_slot, from_trial, params}]
    self.lineage: list[list[dict]] = [[] for _ in range(pool.size)]
    best = work / "best_trial.json"
    if best.exists():
      saved = json.loads(best.read_text())
      self.best = (saved["value"], saved["number"])

  # ----------------------------------------------------------------- trials

  def _count(self) -> int:
    return sum(1 for t in self.study.get_trials(deepcopy=False)
               if not t.user_attrs.get("lost"))

  def start(self, slot: int, always: bool = False) -> bool:
    if not always and self._count() >= self.trials:
      return False
    trial = self.study.ask(self.space)
    trial.set_user_attr("workdir", str(self.work))
    trial.set_user_attr("slot", slot)
    self.pool.fill(slot, dict(trial.params))
    self.slots[slot] = Slot(trial)
    logging.info("Trial %d in slot %d: %s", trial.number, slot, trial.params)
    return True

  def end(self, slot: int, state: str, value: float | None = None, why: str = ""):
    optuna = import_optuna()
    trial = self.slots[slot].trial
    if why:
      trial.set_user_attr("failed", why)
    self.study.tell(trial, value if state == "complete" else None,
                    state=getattr(optuna.trial.TrialState, state.upper()))
    logging.info("Trial %d %s after %d epochs%s.", trial.number, state,
                 self.slots[slot].epochs, "" if value is None else f": {value:.6g}")
    if state == "complete" and self._better(value):
      self._keep(slot, trial.number, value)
    self.slots[slot] = Slot()

  def _better(self, value: float) -> bool:
    if self.best is None:
      return True
    return value < self.best[0] if self.options["direction"] == "minimize" else (
        value > self.best[0])

  def _keep(self, slot: int, number: int, value: float) -> None:
    """The best trial's variables, for its test figure at the end."""
    from flax import serialization  # noqa: PLC0415
    (self.work / "best_trial.msgpack").write_bytes(
        serialization.msgpack_serialize(self.pool.variables(slot)))
    (self.work / "best_trial.json").write_text(json.dumps({"number": number, "value": value}))
    self.best = (value, number)

  # ----------------------------------------------------------------- the loop

  def loop(self, signals: preemption.Signals) -> None:
    for slot, s in enumerate(self.slots):
      if s.trial is None:
        self.start(slot)
    while any(s.trial is not None for s in self.slots):
      history = self.pool.train_epoch()
      self.tick += 1
      finite = np.all(np.isfinite(np.asarray(history["loss"])), axis=0)
      for s in self.slots:
        s.epochs += s.trial is not None
      due = [i for i, s in enumerate(self.slots)
             if s.trial is not None and (s.epochs in self.rungs or s.epochs == self.num_epochs)]
      values = self.pool.validate()[self.options["objective"]] if due else None
      for i, s in enumerate(self.slots):
        if s.trial is None:
          continue
        if not finite[i]:
          self.end(i, "fail", why=f"the loss became NaN or infinite in epoch {s.epochs}")
        elif i in due:
          self._report(i, float(values[i]))
      for i, s in enumerate(self.slots):
        if s.trial is None:
          self.start(i)
      self.stop_on(signals)
    return None

  def stop_on(self, signals: preemption.Signals) -> None:
    if signals.received is not None:
      self._save()
      self.write()
      raise preemption.Stopped(signals.received, self.tick,
                               f"after {self.tick} epochs of the search's slots")

  def _report(self, slot: int, value: float) -> None:
    s = self.slots[slot]
    if not math.isfinite(value):
      return self.end(slot, "fail", why=f"the validation {self.options['objective']} is "
                       f"{value} after epoch {s.epochs}")
    s.trial.report(value, s.epochs)
    if s.epochs == self.num_epochs:
      return self.end(slot, "complete", value)
    if s.trial.should_prune():
      return self.end(slot, "pruned")
    return None

  # ----------------------------------------------------------------- resume

  def _save(self) -> None:
    state = self.pool.state
    meta = {"tick": self.tick, "steps": self.pool.steps().tolist(),
            "slots": [{"trial": None if s.trial is None else s.trial.number,
                       "epochs": s.epochs} for s in self.slots],
            "lineage": self.lineage}
    checkpoint.save(self.mngr, self.tick, state.variables, state.opt_state, meta)

  def resume(self) -> None:
    """Takes back the trials this workdir's slots trained when a signal stopped it
    (from the slots' checkpoint, bit for bit); trials it left running when killed
    outright are marked failed ('lost') and queued again with the same numbers."""
    optuna = import_optuna()
    by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
    resumed = set()
    step = self.mngr.latest_step()
    if step is not None:
      state = self.pool.state
      variables, opt_state, meta = checkpoint.restore(self.mngr, step, state.variables,
                                                      state.opt_state)
      if len(meta["slots"]) != self.pool.size:
        raise SearchError(f"{self.work} holds a search of {len(meta['slots'])} slots; "
                          f"resume it with --slots={len(meta['slots'])}.")
      self.tick = meta["tick"]
      self.lineage = meta.get("lineage", self.lineage)
      for slot, saved in enumerate(meta["slots"]):
        frozen = by_number.get(saved["trial"])
        if frozen is None or frozen.state != optuna.trial.TrialState.RUNNING:
          continue
        self.pool.fill(slot, dict(frozen.params))
        # Optuna's own handle on a running trial (the constructor ask() uses).
        self.slots[slot] = Slot(optuna.trial.Trial(self.study, frozen._trial_id),
                                 saved["epochs"])
        resumed.add(frozen.number)
      params = variables.pop("params")
      self.pool.state = self.pool.state.replace(
          step=jnp.asarray(meta["steps"], jnp.int32), params=params, opt_state=opt_state,
          model_state=variables)
      logging.info("Resumed %d trials of the search in their slots at step %s.",
                   len(resumed), meta["steps"])
    for frozen in by_number.values():
      if (frozen.state == optuna.trial.TrialState.RUNNING and frozen.number not in resumed
          and frozen.user_attrs.get("workdir") == str(self.work)):
        trial = optuna.trial.Trial(self.study, frozen._trial_id)
        trial.set_user_attr("lost", True)
        trial.set_user_attr("failed", "its process was killed before it finished")
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if not self.requeue_lost:
          logging.info("Trial %d was left running by a killed process.", frozen.number)
          continue
        self.study.enqueue_trial(dict(frozen.params), user_attrs={"rerun_of": frozen.number})
        logging.info("Trial %d was left running by a killed process: queued again.",
                     frozen.number)

  # ----------------------------------------------------------------- results

  def write(self, best: dict | None = None) -> dict:
    options = self.options
    result = {"study": options["study"],
              "storage": options["storage"] or str(self.work / "study.journal"),
              "space": json.loads(space_string(self.space)),
              "objective": options["objective"], "direction": options["direction"],
              "sampler": options["sampler"], "pruner": options["pruner"],
              "rungs": self.rungs, "slots": self.pool.size, "trials_requested": self.trials,
              "strategy": options["strategy"],
              **({"lineage": self.lineage} if options["strategy"] == "pbt" else {}),
              "validation_fraction": options["validation_fraction"],
              "traces": dict(self.pool.traces), "trials": study_lib.records(self.study),
              "best": best}
    (self.work / "search.json").write_text(json.dumps(result, indent=2, default=float))
    return result

  def finish(self, dataset, held) -> dict:
    complete = [t for t in self.study.get_trials(deepcopy=False)
                if t.state.name == "COMPLETE"]
    best = None
    if complete:
      winner = self.study.best_trial
      best = {"number": winner.number, "params": winner.params, "value": winner.value,
              "command": self.command(winner.params), "test": None}
      if self.best is not None and self.best[1] == winner.number:
        best["test"] = self._test(winner.params, dataset, held)
      else:
        best["test_note"] = ("trained by another process of the study; run its command "
                             "for the test figures")
      logging.info("Best trial %d: validation %s %.6g; test %s.", winner.number,
                   self.options["objective"], winner.value,
                   best["test"] and best["test"].get("mse"))
    result = self.write(best)
    if self.options["plots"] and len(complete) > 1:
      study_lib.plots(self.study, self.work)
    return result

  def _test(self, params: dict, dataset, held) -> dict:
    """The winner's test figures, once: its variables on the untouched test set."""
    from flax import serialization  # noqa: PLC0415
    variables = serialization.msgpack_restore(
        (self.work / "best_trial.msgpack").read_bytes())
    config = sweep.member_config(self.pool.base, params)
    run = engine.setup(config, held, abstract=True)
    evaluator = run.evaluator(dataset.test_images, dataset.test_labels, dataset.scale)
    return evaluator.results(variables)["test"]

  def command(self, params: dict) -> str:
    """The best trial as an ``experiments.main`` command (on the whole train set)."""
    given = self.options["command"] or {}
    parts = ["python", "-m", "experiments.main",
             f"--config={given.get('config', '<config>')}",
             f"--workdir={self.work / 'best'}", *given.get("overrides", [])]
    parts += [f"--config.{k}={v!r}" if isinstance(v, float) else f"--config.{k}={v}"
              for k, v in params.items()]
    return shlex.join(parts)
