"""Population-based training (``strategy='pbt'``): the slots train together as one
population; at rung epochs the worst copy the best's state and explore their
numbers, each copy a new Optuna trial."""

from __future__ import annotations

import math

import numpy as np
from absl import logging

from aejax import preemption
from aejax.tuner.driver import Driver, Slot
from aejax.tuner.space import import_optuna

PBT_RESAMPLE = 0.25  # A copied slot's number is drawn anew this often, else perturbed:
PBT_FACTORS = (0.8, 1.2)  # multiplied by one of these (the usual PBT explore step).


class Population(Driver):
  """The search's loop as population-based training (``Driver`` for the rest)."""

  requeue_lost = False  # a member's state is its history: a lost one is not rerun

  def loop(self, signals: preemption.Signals) -> None:
    """Population-based training: the slots train together; at each rung before the
    last epoch the bottom quantile (and any failed slot) copies a top slot's state
    and explores its numbers. Each copy starts a new Optuna trial (its numbers, from
    then on); the trial it replaced is told pruned."""
    mine = [t for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get("workdir") == str(self.work) and not t.user_attrs.get("lost")]
    if self.tick == 0 and not mine:  # a new population (not a finished one run again)
      for slot in range(self.pool.size):
        self.start(slot, always=True)
    while any(s.trial is not None for s in self.slots):
      history = self.pool.train_epoch()
      self.tick += 1
      finite = np.all(np.isfinite(np.asarray(history["loss"])), axis=0)
      for i, s in enumerate(self.slots):
        s.epochs = self.tick
        if s.trial is not None and not finite[i]:
          self.end(i, "fail", why=f"the loss became NaN or infinite in epoch {self.tick}")
      if self.tick in self.rungs or self.tick == self.num_epochs:
        values = self.pool.validate()[self.options["objective"]]
        for i, s in enumerate(self.slots):
          if s.trial is None:
            continue
          if not math.isfinite(float(values[i])):
            self.end(i, "fail", why=f"the validation {self.options['objective']} is "
                      f"{values[i]} after epoch {self.tick}")
          elif self.tick == self.num_epochs:
            s.trial.report(float(values[i]), self.tick)
            self.end(i, "complete", float(values[i]))
          else:
            s.trial.report(float(values[i]), self.tick)
        if self.tick < self.num_epochs:
          self._exploit(values)
      self.stop_on(signals)

  def _exploit(self, values: np.ndarray) -> None:
    live = [i for i, s in enumerate(self.slots) if s.trial is not None]
    if not live:
      return
    ranked = sorted(live, key=lambda i: float(values[i]),
                    reverse=self.options["direction"] == "maximize")
    # At least one copy in a population of two or more: bottom and top never overlap.
    n = max(1, int(len(ranked) * self.options["quantile"])) if len(ranked) > 1 else 0
    top = ranked[:max(n, 1)]
    losers = [i for i, s in enumerate(self.slots) if s.trial is None] + ranked[len(ranked) - n:]
    rng = np.random.default_rng([self.options["seed"], self.tick])  # the same on a resume
    for slot in losers:
      source = top[int(rng.integers(len(top)))]
      parent = self.slots[source].trial
      params = self._explore(dict(parent.params), rng)
      if self.slots[slot].trial is not None:
        self.end(slot, "pruned")
      self.study.enqueue_trial(params, user_attrs={"copied_from": parent.number},
                               skip_if_exists=False)
      trial = self.study.ask(self.space)
      trial.set_user_attr("workdir", str(self.work))
      trial.set_user_attr("slot", slot)
      self.pool.copy(slot, source, dict(trial.params))
      self.slots[slot] = Slot(trial, self.tick)
      self.lineage[slot].append({"epoch": self.tick, "trial": trial.number,
                                 "from_slot": source, "from_trial": parent.number,
                                 "params": dict(trial.params)})
      logging.info("Epoch %d: slot %d copies slot %d (trial %d) as trial %d: %s",
                   self.tick, slot, source, parent.number, trial.number, trial.params)

  def _explore(self, params: dict, rng: np.random.Generator) -> dict:
    """PBT's explore: each number (not the seed) drawn anew from its distribution with
    probability PBT_RESAMPLE, else multiplied by one of PBT_FACTORS, within bounds."""
    optuna = import_optuna()
    out = {}
    for key, value in params.items():
      d = self.space[key]
      if key == "seed":
        out[key] = value
      elif isinstance(d, optuna.distributions.CategoricalDistribution):
        out[key] = (d.choices[int(rng.integers(len(d.choices)))]
                    if rng.random() < PBT_RESAMPLE else value)
      else:
        if rng.random() < PBT_RESAMPLE:
          low, high = (math.log(d.low), math.log(d.high)) if d.log else (d.low, d.high)
          new = rng.uniform(low, high)
          new = math.exp(new) if d.log else new
        else:
          new = value * PBT_FACTORS[int(rng.integers(len(PBT_FACTORS)))]
        new = min(max(new, d.low), d.high)
        out[key] = (int(round(new)) if isinstance(d, optuna.distributions.IntDistribution)
                    else float(new))
    return out
