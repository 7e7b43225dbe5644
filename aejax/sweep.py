"""Many models in one program: ``config.sweep`` and the members it makes.

``config.sweep = "seed=0:5; losses.l1_activity=1e-5,1e-4"`` is a grid: each item is
``key=values``, where values are ``a:b`` (the integers a, ..., b-1) or a comma list;
the members are the grid's product, in order (the last key varies fastest). Every
member trains the same model on the same data with its own numbers: the train step
is ``vmap``-ed over a leading *members* axis of the parameters, optimizer state,
keys and these numbers, so the whole sweep is one compiled program.

Only keys that reach the step as numbers may vary (``SWEEPABLE``, plus every loss
term's weight, ``losses.<term>``); a key that changes shapes or structure (the model,
data, batch size, epochs, schedule) is refused before compute. ``Numbers`` is the
view of a config that the step's pieces (optimizer, objective, corruption) read: the
config's own values, with a member's numbers in place of the swept keys.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import ml_collections
import numpy as np

from aejax import evaluate, losses

# Keys a member may set, besides 'losses.<term>'. warmup_epochs is not here: it is a
# step count, fixed when the schedule is compiled.
SWEEPABLE = ("seed", "learning_rate", "final_lr_fraction", "adam_b1", "adam_b2", "adam_eps",
             "weight_decay", "corruption.level")


def parse(spec: str) -> list[tuple[str, list]]:
  """``[(key, values), ...]`` of a sweep string; ValueError naming what is wrong."""
  items = []
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    key, sep, values = (s.strip() for s in part.partition("="))
    if not sep or not key or not values:
      raise ValueError(f"config.sweep: {part!r} is not key=values; write e.g. "
                       "'seed=0:5' or 'learning_rate=1e-3,3e-3'.")
    if key in (k for k, _ in items):
      raise ValueError(f"config.sweep names {key!r} twice.")
    items.append((key, _values(key, values)))
  return items


def _values(key: str, text: str) -> list:
  try:
    if ":" in text:
      start, stop = (int(v) for v in text.split(":"))
      values = list(range(start, stop))
    else:
      values = [int(v) if key == "seed" else float(v) for v in text.split(",")]
  except ValueError:
    raise ValueError(f"config.sweep: the values {text!r} of {key!r} are not numbers; "
                     "write a:b for a range of integers or a comma list.") from None
  if not values:
    raise ValueError(f"config.sweep: {key}={text} gives no value.")
  if key == "seed" and any(not float(v).is_integer() for v in values):
    raise ValueError(f"config.sweep: seeds must be integers, got {text!r}.")
  return values


def members(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
  """Each member's overrides ``{dotted key: value}``; ``[]`` without a sweep."""
  if not config.sweep:
    return []
  items = parse(config.sweep)
  keys = [k for k, _ in items]
  check_keys(config, keys)
  return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in items))]


def check_keys(config: ml_collections.ConfigDict, keys: list[str],
               source: str = "config.sweep") -> None:
  """Refuses a key that may not vary between members (``SWEEPABLE``, ``losses.<term>``
  of a term ``config.losses`` names); ``source`` names what asked, for the message."""
  terms = losses.parse_weights(config.losses)
  for key in keys:
    term = key.removeprefix("losses.")
    if key.startswith("losses.") and term not in terms:
      raise ValueError(f"{source} varies {key!r}, a term config.losses does not name "
                       f"({config.losses!r}); add it there with its base weight.")
    if key not in SWEEPABLE and not key.startswith("losses."):
      raise ValueError(
          f"{source} cannot vary {key!r}: only numbers the train step reads may vary "
          f"in one program ({', '.join(SWEEPABLE)}, losses.<term>). A key that changes "
          "shapes or structure (model, data, batch size, epochs, schedule) needs runs of "
          "its own.")
  if config.schedule == "exponential" and "final_lr_fraction" in keys:
    raise ValueError(f"{source} cannot vary final_lr_fraction with the exponential "
                     "schedule (optax fixes its decay rate when the schedule is built).")


def member_config(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  """Member ``overrides``'s own config: the same run without a sweep."""
  member = ml_collections.ConfigDict(config.to_dict())
  member.sweep = ""
  weights = losses.parse_weights(member.losses)
  for key, value in overrides.items():
    if key.startswith("losses."):
      weights[key.removeprefix("losses.")] = float(value)
    elif key == "corruption.level":
      member.corruption.level = float(value)
    else:
      member[key] = type(member[key])(value)
  member.losses = ", ".join(f"{name}={weight!r}" for name, weight in weights.items())
  return member


def numbers(configs: list[ml_collections.ConfigDict], swept: list[str]) -> dict[str, np.ndarray]:
  """The swept numbers of every member, ``{dotted key: [M]}`` (seeds aside: they make
  the keys, not the step)."""
  out = {}
  for key in swept:
    if key == "seed":
      continue
    if key.startswith("losses."):
      values = [losses.parse_weights(c.losses)[key.removeprefix("losses.")] for c in configs]
    elif key == "corruption.level":
      values = [c.corruption.level for c in configs]
    else:
      values = [c[key] for c in configs]
    out[key] = np.asarray(values, np.float32)
  return out


class Numbers:
  """A config as the step's pieces read it, with ``values`` (``{dotted key: number or
  traced array}``) in place of the config's own: ``view.learning_rate``,
  ``view.corruption.level``, ``view.loss_weights()``."""

  def __init__(self, config, values: dict[str, Any], prefix: str = ""):
    self._config, self._values, self._prefix = config, values, prefix

  def __getattr__(self, name: str):
    key = self._prefix + name
    if key in self._values:
      return self._values[key]
    value = self._config[name]
    if isinstance(value, ml_collections.ConfigDict):
      return Numbers(value, self._values, key + ".")
    return value

  def loss_weights(self) -> dict[str, Any]:
    weights = losses.parse_weights(self._config.losses)
    return {name: self._values.get(f"losses.{name}", weight) for name, weight in weights.items()}


# ------------------------------------------------------------------- the summary

T_95 = {}  # degrees of freedom -> the two-sided 95% t quantile (filled on first use)


def _t95(dof: int) -> float:
  if dof not in T_95:
    from scipy import stats  # a dependency of scikit-learn, imported only here
    T_95[dof] = float(stats.t.ppf(0.975, dof))
  return T_95[dof]


def describe(values: list[float]) -> dict[str, Any]:
  """Mean, sample standard deviation, min, max and the 95% t-interval of the mean."""
  x = np.asarray(values, np.float64)
  n = len(x)
  mean = float(np.mean(x))
  std = float(np.std(x, ddof=1)) if n > 1 else 0.0
  half = _t95(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
  return {"n": n, "mean": mean, "std": std, "min": float(np.min(x)), "max": float(np.max(x)),
          "ci95": [mean - half, mean + half]}


def _flat_numbers(tree: dict, prefix: str = "") -> dict[str, float]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat_numbers(value, f"{prefix}{key}."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
      flat[prefix + key] = float(value)
  return flat


FIGURES = evaluate.FIGURES  # a member's, summarised


def summary(member_results: list[dict]) -> list[dict]:
  """For each setting of the non-seed keys: its members and, for every test metric
  (``test``, ``denoising``, ``code_stats``, ``model_eval``, flattened), ``describe``
  over its seeds."""
  groups: dict[tuple, list[dict]] = {}
  for member in member_results:
    setting = tuple(sorted((k, v) for k, v in member["overrides"].items() if k != "seed"))
    groups.setdefault(setting, []).append(member)
  out = []
  for setting, group in groups.items():
    metrics = [_flat_numbers({k: m[k] for k in FIGURES if k in m}) for m in group]
    names = sorted(set.intersection(*(set(m) for m in metrics)))
    out.append({"setting": dict(setting), "members": [m["member"] for m in group],
                "metrics": {name: describe([m[name] for m in metrics]) for name in names}})
  return out
