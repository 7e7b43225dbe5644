"""The search (``aejax.search``) against Optuna's standard loop of separate trainings.

    python -m experiments.search_bench --data_dir=path/to/mnist --trials=32 --slots=8 \
        --search_seeds=0,1,2 --loop_seeds=0 --launches=3 --json=docs/benchmarks/cpu_search.json

Three arms search the same space (vanilla; learning_rate × weight_decay × adam_b2) with
the same Optuna sampler (TPE, seeded by the search seed), the same pruner (median) and
the same rungs (1, 3, 5 epochs), on the same train and validation split (the search's
fixed 1/6 of the train set held out):

- **search**: ``aejax.search`` with ``--slots`` trials training at once as one program.
- **loop**: Optuna's ask-and-tell loop, one trial at a time, each through ``aejax.train``
  in this process, rung by rung: the trial trains ``num_epochs=1`` and reports, and if
  the pruner lets it go on, resumes from its checkpoint with ``num_epochs=3`` (a layout
  key a run may grow), then 5. Its validation figure is the run's test MSE, with
  ``data=(train split, validation split)``.
- **launches**: the loop's first ``--launches`` trials again, each rung as a CLI launch
  (``python -m experiments.main --config.dataset=npz:<the split>``), replaying the
  loop's numbers and epochs; the arm's total is extrapolated from them as the loop's
  total times (those launches' seconds / the same trials' seconds in the loop).

Both in-process arms use ``schedule=constant``: with a cosine schedule a trial resumed
with more epochs would follow another schedule than one trained to 5 epochs straight,
so a loop trial would not be the trial the search trains. With it, the two arms train
each trial alike and differ only in which trials the sampler proposes and when the
pruner decides (the search's slots report eight at a time). Timings are wall-clock,
data loading and compilation included; the best figure is each arm's best validation
MSE, the median over its seeds (the search's seeds cost least, so it may run more).
"""

import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags, logging

import aejax
from aejax import data as data_lib
from aejax.tuner import slots as tuner_slots, space as tuner_space

_DATA_DIR = flags.DEFINE_string("data_dir", "", "MNIST's IDX folder; empty: the bundled sample.")
_TRIALS = flags.DEFINE_integer("trials", 32, "Trials per arm.")
_SLOTS = flags.DEFINE_integer("slots", 8, "The search's slots.")
_SEARCH_SEEDS = flags.DEFINE_list("search_seeds", ["0"], "Sampler seeds of the search arm.")
_LOOP_SEEDS = flags.DEFINE_list("loop_seeds", ["0"], "Sampler seeds of the loop arm.")
_EPOCHS = flags.DEFINE_integer("num_epochs", 5, "Epochs of a trial that is not pruned.")
_RUNGS = flags.DEFINE_string("rungs", "1,3,5", "Epochs at which trials report.")
_LAUNCHES = flags.DEFINE_integer("launches", 3, "Loop trials replayed as CLI launches "
                                 "(0: no launches arm).")
_WORKDIR = flags.DEFINE_string("workdir", "", "Scratch folder (default: a temporary one).")
_JSON = flags.DEFINE_string("json", "", "Write the measurements to this JSON file.")

SPACE = {"learning_rate": "loguniform(1e-4,3e-2)", "weight_decay": "loguniform(1e-6,1e-2)",
         "adam_b2": "uniform(0.9,0.9999)"}
OVERRIDES = {"schedule": "constant"}


def _config():
  config = aejax.get_config("vanilla", num_epochs=_EPOCHS.value, **OVERRIDES)
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  else:
    config.dataset = "mnist_sample"
  return config


def _space() -> str:
  return "; ".join(f"{k}={v}" for k, v in SPACE.items())


def run_search(config, work: pathlib.Path, seed: int, rungs: list[int]) -> dict:
  start = time.perf_counter()
  result = aejax.search(config, str(work), space=_space(), trials=_TRIALS.value,
                        slots=_SLOTS.value, rungs=",".join(map(str, rungs)), seed=seed,
                        pruner="median", plots=False)
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "best": result["best"]["value"],
          "states": _states(t["state"] for t in result["trials"]),
          "epochs": sum(int(max(t["rungs"], key=int)) if t["rungs"] else 0
                        for t in result["trials"]),
          "traces": result["traces"]}


def run_loop(config, held, work: pathlib.Path, seed: int, rungs: list[int]) -> dict:
  """Optuna's ask-and-tell loop of ``aejax.train`` calls, each trial rung by rung."""
  import optuna  # noqa: PLC0415
  study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed),
                              pruner=optuna.pruners.MedianPruner(), direction="minimize")
  space = tuner_space.parse_space(_space(), config)
  data = {"train": held.train_images, "test": held.test_images, "name": "search_split"}
  trials, start = [], time.perf_counter()
  for number in range(_TRIALS.value):
    trial = study.ask(space)
    began, value, state = time.perf_counter(), None, "complete"
    for rung in rungs:
      trial_config = aejax.get_config("vanilla", num_epochs=rung, **OVERRIDES,
                                      **dict(trial.params))
      trial_config.data_dir = config.data_dir
      value = aejax.train(trial_config, str(work / f"trial{number}"), data=data
                          ).results["test"]["mse"]
      if not np.isfinite(value):
        state = "fail"
        break
      trial.report(value, rung)
      if rung != rungs[-1] and trial.should_prune():
        state = "pruned"
        break
    study.tell(trial, value if state == "complete" else None,
               state=getattr(optuna.trial.TrialState, state.upper()))
    trials.append({"number": number, "params": dict(trial.params), "state": state,
                   "epochs": rung, "seconds": time.perf_counter() - began})
  seconds = time.perf_counter() - start
  complete = [t for t in study.trials if t.state.name == "COMPLETE"]
  return {"seconds": seconds, "best": min(t.value for t in complete) if complete else None,
          "states": _states(t["state"] for t in trials),
          "epochs": sum(t["epochs"] for t in trials), "trials": trials}


def run_launches(held, loop: dict, work: pathlib.Path, rungs: list[int]) -> dict:
  """The loop's first trials again, each rung a CLI launch; the arm's total scaled up."""
  work.mkdir(parents=True, exist_ok=True)
  split = work / "split.npz"
  np.savez(split, train=held.train_images, test=held.test_images)
  replayed, seconds = loop["trials"][:_LAUNCHES.value], 0.0
  for t in replayed:
    for rung in [r for r in rungs if r <= t["epochs"]]:
      cmd = [sys.executable, "-m", "experiments.main",
             "--config=experiments/configs/vanilla.py", f"--workdir={work / str(t['number'])}",
             f"--config.dataset=npz:{split}", f"--config.num_epochs={rung}",
             *(f"--config.{k}={v}" for k, v in {**OVERRIDES, **t["params"]}.items())]
      began = time.perf_counter()
      subprocess.run(cmd, check=True, capture_output=True, text=True)
      seconds += time.perf_counter() - began
  in_loop = sum(t["seconds"] for t in replayed)
  return {"launched_trials": len(replayed), "launched_seconds": seconds,
          "same_trials_in_loop_seconds": in_loop,
          "seconds": loop["seconds"] * seconds / in_loop, "extrapolated": True}


def _states(states) -> dict:
  out = {}
  for s in states:
    out[s] = out.get(s, 0) + 1
  return out


def _median(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rungs = sorted({int(r) for r in _RUNGS.value.split(",")} | {_EPOCHS.value})
  config = _config()
  held = tuner_slots.split_validation(data_lib.load(config), tuner_slots.VALIDATION_FRACTION)
  scratch = pathlib.Path(_WORKDIR.value or tempfile.mkdtemp(prefix="search_bench_"))
  report = {"command": "python -m experiments.search_bench " + " ".join(
                a.replace(_DATA_DIR.value, "path/to/mnist") if _DATA_DIR.value else a
                for a in sys.argv[1:] if not a.startswith(("--json", "--workdir"))),
            "jax": jax.__version__, "device": str(jax.devices()[0].platform),
            "machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
            "load_average_at_start": os.getloadavg()[0],
            "space": SPACE, "overrides": OVERRIDES, "trials": _TRIALS.value,
            "slots": _SLOTS.value, "rungs": rungs, "n_train": held.n_train,
            "n_validation": len(held.test_images), "seeds": {}}
  for seed in sorted({*map(int, _SEARCH_SEEDS.value), *map(int, _LOOP_SEEDS.value)}):
    arms = {}
    if str(seed) in _SEARCH_SEEDS.value:
      arms["search"] = run_search(config, scratch / f"search{seed}", seed, rungs)
      print(f"seed {seed} search: {arms['search']['seconds']:.0f} s, best "
            f"{arms['search']['best']:.6f}", flush=True)
    if str(seed) in _LOOP_SEEDS.value:
      arms["loop"] = run_loop(config, held, scratch / f"loop{seed}", seed, rungs)
      print(f"seed {seed} loop: {arms['loop']['seconds']:.0f} s, best "
            f"{arms['loop']['best']:.6f}", flush=True)
      if _LAUNCHES.value and str(seed) == _LOOP_SEEDS.value[0]:
        arms["launches"] = run_launches(held, arms["loop"], scratch / "launches", rungs)
    report["seeds"][str(seed)] = arms
  report["load_average_at_end"] = os.getloadavg()[0]
  report["summary"] = summary = _summary(report["seeds"])
  _print(report, summary)
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(report, indent=2, default=float) + "\n")


def _summary(seeds: dict) -> dict:
  arms = {}
  for name in ("search", "loop", "launches"):
    runs = [s[name] for s in seeds.values() if name in s]
    if runs:
      arms[name] = {"median_seconds": _median(r["seconds"] for r in runs),
                    "median_best_mse": _median(r.get("best") for r in runs), "runs": len(runs)}
  search = arms.get("search", {}).get("median_seconds")
  for name, arm in arms.items():
    arm["search_speedup"] = arm["median_seconds"] / search if search else None
  return arms


def _print(report: dict, summary: dict) -> None:
  print(f"\n{report['machine']}, jax {report['jax']}; {report['trials']} trials, "
        f"{report['slots']} slots, rungs {report['rungs']}; load average "
        f"{report['load_average_at_start']:.1f} → {report['load_average_at_end']:.1f}")
  print("| arm | seeds | seconds (median) | search faster by | best validation MSE (median) |")
  print("|---|---|---|---|---|")
  for name, arm in summary.items():
    note = " (extrapolated)" if name == "launches" else ""
    best = arm["median_best_mse"]
    print(f"| {name} | {arm['runs']} | {arm['median_seconds']:.0f}{note} "
          f"| {arm['search_speedup']:.2f}× | {'–' if best is None else f'{best:.6f}'} |")


if __name__ == "__main__":
  app.run(main)
