"""Section 15, the headline figures over seeds: reads the 5-seed sweep runs that
scripts/train_all.sh trains (one per config, outside the report: about 4 hours on a
2-core CPU) and gives each figure as mean ± std with its 95% interval and verdict."""

from __future__ import annotations

import json
import pathlib

from aejax import sweep
from experiments.report.plan import SEED_CLAIMS, SeedClaim
from experiments.report.results import SeedRow, Seeds


def figure(member: dict, name: str) -> float:
  """One member's figure ``name``: a dotted key of its results, or the denoising
  gain (denoised minus noisy PSNR)."""
  if name == "denoising.gain_db":
    d = member["denoising"]
    return d["psnr_denoised_db"] - d["psnr_noisy_db"]
  section, key = name.split(".")
  return member[section][key]


def verdict(claim: SeedClaim, stats: dict) -> bool | None:
  """Met: the mean is at the target and the 95% interval does not cross it (None
  without a target, or with one seed)."""
  if claim.target is None or stats["n"] < 2:
    return None
  low, high = stats["ci95"]
  return low >= claim.target if claim.higher_is_better else high <= claim.target


def not_over_seeds(result: dict) -> str | None:
  """Why a finished run cannot give a figure over seeds (None: it can)."""
  if "members" not in result:
    return "a single run, not a sweep"
  keys = [key for key, _ in sweep.parse(result["sweep"])]
  if keys != ["seed"]:
    return f"a sweep over {', '.join(keys)}, not over the seed alone"
  return None


def seeds(seeds_dir: pathlib.Path) -> Seeds:
  """``rows``: each claim whose sweep is in ``seeds_dir``, its seeds' figures
  described; ``missing``: the train_all.sh command for the others; ``unusable``: the
  finished runs there that are not a sweep over seeds, and why (train_all.sh would
  refuse to train over them)."""
  rows, numbers, missing, unusable = [], {}, [], {}
  for claim in SEED_CLAIMS:
    path = seeds_dir / claim.workdir / "results.json"
    result = json.loads(path.read_text()) if path.exists() else None
    why = None if result is None else not_over_seeds(result)
    if why:
      unusable[str(seeds_dir / claim.workdir)] = why
    if result is None or why:
      missing.append(claim.spec)
      continue
    values = [figure(m, claim.figure) for m in result["members"]]
    stats = sweep.describe(values)
    met = verdict(claim, stats)
    numbers[claim.workdir] = {"figure": claim.figure, "values": values, **stats,
                              "target": claim.target, "met": met, "sweep": result["sweep"],
                              "epochs": result["epochs"]}
    rows.append(SeedRow(claim=claim, stats=stats, met=met, epochs=result["epochs"]))
  command = (None if not missing else
             f'CONFIGS="{" ".join(missing)}" bash scripts/train_all.sh path/to/mnist {seeds_dir}')
  return Seeds(numbers={"seeds": numbers}, rows=rows, missing=missing, unusable=unusable,
               command=command, seeds_dir=str(seeds_dir))
