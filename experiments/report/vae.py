"""Section 13, VAE and IWAE: reads the long runs trained outside the report, from
their results.json or, for a run stopped early, the evaluate_run.json of its newest
checkpoint."""

from __future__ import annotations

import json
import pathlib

from aejax import plots
from experiments.report.context import metrics
from experiments.report.plan import BURDA_IWAE_NLL, BURDA_VAE_NLL, LONG_RUNS
from experiments.report.results import Vae

ANCHORS = {"vae": BURDA_VAE_NLL, "iwae": BURDA_IWAE_NLL}


def vae(runs_dir: pathlib.Path, out: pathlib.Path) -> Vae:
  """Each long run's test NLL and ELBO against Burda et al.'s; copies its prior
  samples into ``out`` and draws vae_curves.png from the runs' metrics. ``stopped``
  and ``missing`` name the runs read from evaluate_run.json and those not there."""
  rows, numbers, curves, pictures, missing, stopped = [], {}, {}, [], [], []
  for name, config_file in LONG_RUNS.items():
    workdir = runs_dir / name
    results_path = workdir / "results.json"
    launch = (f"python -m experiments.main --config {config_file} --workdir "
              f"{workdir} --config.data_dir=path/to/mnist")
    evaluated = workdir / "evaluate_run.json"  # a run stopped before its end
    if results_path.exists():
      result = json.loads(results_path.read_text())
    elif evaluated.exists():
      result = json.loads(evaluated.read_text())
      config = json.loads((workdir / "config.json").read_text())
      stopped.append({"name": name, "epoch": result["epoch"], "planned": config["num_epochs"],
                      "file": evaluated.name, "workdir": str(workdir),
                      "path": str(evaluated)})
    else:
      missing.append({"name": name, "launch": launch, "workdir": str(workdir)})
      numbers[name] = {"present": False, "launch": launch}
      continue
    model_eval = result.get("model_eval", {})
    nll, elbo = model_eval.get("nll"), model_eval.get("elbo")
    records = metrics(workdir) if (workdir / "metrics.jsonl").exists() else []
    if records:
      curves[name] = records
    if (workdir / "prior_samples.png").exists():
      target = out / f"{name}_prior_samples.png"
      target.write_bytes((workdir / "prior_samples.png").read_bytes())
      pictures.append((name, target.name))
    epochs = result.get("epochs", result.get("epoch"))  # evaluate_run.json: "epoch"
    numbers[name] = {"present": True, "launch": launch, "epochs": epochs,
                     "train_seconds": result.get("train_seconds"),
                     "backend": result.get("backend"), "nll": nll, "elbo": elbo,
                     "burda_nll": ANCHORS[name]}
    segments = result.get("segments", [])
    rows.append({"name": name, "epochs": epochs, "backend": result.get("backend", "?"),
                 "segments": len(segments),
                 "resumed_from": segments[-1]["first_epoch"] if len(segments) > 1 else None,
                 "nll": nll, "elbo": elbo, "burda_nll": ANCHORS[name],
                 "nll_minus_burda": None if nll is None else nll - ANCHORS[name]})
  if curves:
    plots.training_curves({"VAE / IWAE: test and train loss (nats)": curves},
                          out / "vae_curves.png")
  return Vae(numbers={"vae": numbers}, rows=rows, curves=bool(curves), pictures=pictures,
             stopped=stopped, missing=missing)
