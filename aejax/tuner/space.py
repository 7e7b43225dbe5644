"""What a search explores and how: the space of ``key=distribution`` terms, the
sampler, the pruner and its rung epochs, and the strategy's checks; every user error
of these as ``SearchError``, raised before any compute."""

from __future__ import annotations

import json
import re
from typing import Any

import ml_collections

from aejax import config as config_lib, sweep

INSTALL = 'pip install "aejax[search]"'
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
            "qmc": "QMCSampler", "gp": "GPSampler"}
PRUNERS = ("median", "successive_halving", "hyperband", "none")
STRATEGIES = ("refill", "pbt")
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


class SearchError(config_lib.ConfigError):
  """A search the user asked for cannot run as given; the message says what to change."""


def import_optuna():
  """Optuna, an optional dependency: imported where a search needs it, its logging
  quieted to warnings."""
  try:
    import optuna  # noqa: PLC0415 (an optional dependency)
  except ImportError:
    raise SearchError(f"the search needs Optuna: {INSTALL}") from None
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  return optuna


def parse_space(spec: str, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``{key: optuna distribution}`` of ``"key=loguniform(a,b); key=choice(x,y)"``, the
  keys checked as a sweep's (only numbers the step reads may vary)."""
  optuna = import_optuna()
  space = {}
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    key, _, text = (s.strip() for s in part.partition("="))
    match = re.fullmatch(r"(\w+)\((.*)\)", text)
    if not key or not match or match.group(1) not in DISTRIBUTIONS:
      raise SearchError(f"--space: {part!r} is not key=distribution; write e.g. "
                        "'learning_rate=loguniform(1e-4,1e-2)' with one of "
                        f"{', '.join(d + '(...)' for d in DISTRIBUTIONS)}.")
    if key in space:
      raise SearchError(f"--space names {key!r} twice.")
    space[key] = _distribution(optuna, key, match.group(1), match.group(2))
  if not space:
    raise SearchError("--space is empty; give e.g. 'learning_rate=loguniform(1e-4,1e-2)'.")
  try:
    sweep.check_keys(config, list(space), source="--space")
  except ValueError as e:
    raise SearchError(str(e)) from None
  return space


def _distribution(optuna, key: str, kind: str, args: str):
  where = f"--space: {key}={kind}({args})"
  try:
    values = [float(v) for v in args.split(",")]
  except ValueError:
    raise SearchError(f"{where}: its arguments are not numbers.") from None
  integral = all(v.is_integer() for v in values)
  if key == "seed" and (kind in ("loguniform", "uniform") or not integral):
    raise SearchError(f"{where}: a seed is an integer; use int(a,b) or choice(...).")
  if kind == "choice":
    return optuna.distributions.CategoricalDistribution(
        [int(v) for v in values] if key == "seed" else values)
  if len(values) != 2 or not values[0] < values[1]:
    raise SearchError(f"{where}: give two bounds, low < high.")
  low, high = values
  if kind == "int":
    if not integral:
      raise SearchError(f"{where}: int takes integer bounds.")
    return optuna.distributions.IntDistribution(int(low), int(high))
  if kind == "loguniform" and low <= 0:
    raise SearchError(f"{where}: loguniform needs bounds above 0.")
  return optuna.distributions.FloatDistribution(low, high, log=kind == "loguniform")


def space_string(space: dict[str, Any]) -> str:
  """The space as a canonical string: what a study records and compares."""
  return json.dumps({k: optuna_json(d) for k, d in space.items()}, sort_keys=True)


def optuna_json(distribution) -> str:
  return import_optuna().distributions.distribution_to_json(distribution)



def sampler(optuna, name: str, seed: int):
  if name not in SAMPLERS:
    raise SearchError(f"--sampler={name!r}: give one of {', '.join(SAMPLERS)}.")
  return getattr(optuna.samplers, SAMPLERS[name])(seed=seed)


def pruner(optuna, name: str, rungs: list[int], num_epochs: int):
  if name == "median":
    return optuna.pruners.MedianPruner()
  if name == "successive_halving":
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=rungs[0])
  if name == "hyperband":
    return optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=num_epochs)
  if name == "none":
    return optuna.pruners.NopPruner()
  raise SearchError(f"--pruner={name!r}: give one of {', '.join(PRUNERS)}.")


def parse_rungs(rungs, num_epochs: int) -> list[int]:
  """The rung epochs, ascending, each in 1..num_epochs; every epoch by default."""
  if rungs is None or rungs == "":
    return list(range(1, num_epochs + 1))
  try:
    out = sorted({int(r) for r in (rungs.split(",") if isinstance(rungs, str) else rungs)})
  except ValueError:
    raise SearchError(f"--rungs={rungs!r}: give epochs, e.g. 1,3,5.") from None
  if out[0] < 1 or out[-1] > num_epochs:
    raise SearchError(f"--rungs={rungs!r}: rungs are epochs from 1 to config.num_epochs "
                      f"({num_epochs}).")
  return out


def check_strategy(options: dict, rungs: list[int], slots: int, num_epochs: int) -> None:
  if options["strategy"] not in STRATEGIES:
    raise SearchError(f"--strategy={options['strategy']!r}: give one of "
                      f"{', '.join(STRATEGIES)}.")
  if options["strategy"] != "pbt":
    return
  if slots < 2 or not 0 < options["quantile"] <= 0.5:
    raise SearchError(f"--strategy=pbt copies the best slots into the worst: give "
                      f"--slots ≥ 2 (not {slots}) and a quantile in (0, 0.5] "
                      f"(not {options['quantile']}).")
  if not [r for r in rungs if r < num_epochs]:
    raise SearchError(f"--strategy=pbt copies at rungs before the last epoch; --rungs="
                      f"{','.join(map(str, rungs))} has none below config.num_epochs="
                      f"{num_epochs}.")
