"""A hyperparameter search as one program: Optuna's trials on a sweep's members axis.

    aejax.search(config, "runs/search", space="learning_rate=loguniform(1e-4,1e-2); "
                 "weight_decay=loguniform(1e-6,1e-2)", trials=32, slots=8)

``M`` slots train side by side as the members of a sweep (``aejax.sweep``): one
stacked state, one compiled epoch. Each slot trains one trial that Optuna's
ask-and-tell interface proposed (TPE by default). At each rung epoch the slots'
trials report their validation figure and Optuna's pruner decides; a pruned,
finished or failed (NaN) trial's slot is refilled at once with the next trial: that
slot's parameters, optimizer state, step and keys are made anew from the trial's
seed and its numbers replaced, while the other slots go on. The numbers are runtime
arrays of the compiled epoch, not constants, so nothing compiles again
(``Slots.traces`` counts the traces). ``strategy='pbt'`` trains the slots as a
population instead: at rung epochs the worst copy the best's state (``Slots.copy``)
and explore their numbers, each copy a new trial (``pbt.Population``).

A trial trains exactly as ``aejax.train`` with its overrides would, on the search's
train split: its keys come from its own seed and each slot has its own step, which
drives its schedule, its batch order and its ``fold_in`` noise. The validation split
(``validation_fraction`` of the train set, a fixed permutation) is what trials are
judged on; the test set is used once, for the winner (``search.json``'s ``best``).

The study lives in Optuna's storage: a JournalStorage file in the workdir by
default, or ``storage`` (an RDB URL such as ``sqlite:///study.db`` or
``postgresql://user@host/db``, or a journal file's path) to share one study between
processes, each filling its own slots. SIGTERM, SIGINT or SIGUSR1 saves every slot
at the epoch reached and raises ``preemption.Stopped``; the rerun resumes those
trials bit for bit. Trials left running by a process killed outright are marked
failed in the study and queued again with the same numbers (so they re-run
deterministically).

Modules: ``space`` (the space, sampler, pruner, rungs; ``SearchError``), ``slots`` (the
slots and the validation split), ``study`` (Optuna's storage and study, search.json's
trials, figures), ``driver`` (the refill loop, resume, results) and ``pbt``.
"""

from __future__ import annotations

import pathlib

import ml_collections

from aejax import config as config_lib, data as data_lib, preemption
from aejax.tuner import driver as driver_lib, pbt, slots as slots_lib, space as space_lib
from aejax.tuner import study as study_lib
from aejax.tuner.space import SearchError


def search(config: ml_collections.ConfigDict, workdir: str, *, space: str, trials: int,
           slots: int, **options) -> dict:
  """``aejax.search``: searches ``space`` with ``trials`` Optuna trials, ``slots`` of
  them training at once as one program, and returns what ``search.json`` holds.

  ``options``: ``objective`` ('mse'; or 'loss', 'bce', a loss term, 'mse_denoised'),
  ``direction`` ('minimize'), ``sampler`` ('tpe', 'random', 'cmaes', 'qmc', 'gp'),
  ``pruner`` ('median', 'successive_halving', 'hyperband', 'none'), ``rungs`` (epochs,
  e.g. '1,3,5'; every epoch by default), ``storage`` (an URL or journal file; a
  journal in ``workdir`` by default), ``study`` (its name, 'search'), ``seed`` (the
  sampler's, 0), ``validation_fraction`` (1/6), ``plots`` (True), ``command``
  (how to name the config and overrides in the best trial's command), ``strategy``
  ('refill': prune and refill; 'pbt': population-based training of ``slots`` members,
  ``trials`` unused) and ``quantile`` (pbt's bottom and top fraction, 0.25).
  """
  options = {"objective": "mse", "direction": "minimize", "sampler": "tpe",
             "pruner": "median", "rungs": None, "storage": None, "study": "search",
             "seed": 0, "validation_fraction": slots_lib.VALIDATION_FRACTION, "plots": True,
             "command": None, "strategy": "refill", "quantile": 0.25, **options}
  config = config_lib.checked(config)
  optuna = space_lib.import_optuna()
  parsed = space_lib.parse_space(space, config)
  if trials < 1 or slots < 1:
    raise SearchError(f"--trials={trials} and --slots={slots} must both be at least 1.")
  if options["direction"] not in ("minimize", "maximize"):
    raise SearchError(f"--direction={options['direction']!r}: minimize or maximize.")
  rungs = space_lib.parse_rungs(options["rungs"], config.num_epochs)
  space_lib.check_strategy(options, rungs, slots, config.num_epochs)
  sampler = space_lib.sampler(optuna, options["sampler"], options["seed"])
  pruner = space_lib.pruner(optuna, options["pruner"], rungs, config.num_epochs)
  work = pathlib.Path(workdir).absolute()
  work.mkdir(parents=True, exist_ok=True)
  storage = study_lib.open_storage(options["storage"], work)
  dataset = data_lib.load(config)
  held = slots_lib.split_validation(dataset, options["validation_fraction"])
  pool = slots_lib.Slots(config, held, slots, list(parsed))
  if options["objective"] not in pool.objectives():
    raise SearchError(f"--objective={options['objective']!r}: give one of "
                      f"{', '.join(pool.objectives())}.")
  study = study_lib.open_study(storage, options["study"], parsed, options, sampler, pruner)
  loop = pbt.Population if options["strategy"] == "pbt" else driver_lib.Driver
  driver = loop(pool, study, parsed, trials, work, options, rungs)
  with preemption.Signals() as signals:
    driver.resume()
    driver.loop(signals)
  return driver.finish(dataset, held)
