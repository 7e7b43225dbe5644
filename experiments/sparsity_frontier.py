"""Sparsity against reconstruction: TopK autoencoders for several k against L1-penalised
relu autoencoders over a λ sweep, at each code width.

    python -m experiments.sparsity_frontier --data_dir=path/to/mnist \
        --workdir=runs/frontier --num_epochs=3

trains, per width in ``--widths`` (widest first): TopK (with AuxK) for each k in
``--ks`` (k ≤ width), the mlp family with ``mse=1, l1_activity=λ`` for every λ in
``--l1_weights`` as one sweep run (``config.sweep="losses.l1_activity=..."``: one
compiled program, one member per λ), and at the widest width TopK without AuxK for
each k in ``--noaux_ks``; all with the same optimizer, epochs and batch size. Each
run lives in ``<workdir>/<name>`` (a rerun skips finished runs).
It prints two Markdown tables and writes them with every run's figures to
``<workdir>/frontier.json`` and ``frontier.md``:

- every run: test MSE, L0, fraction of variance explained, dead fraction (units that
  never fire over the training set), training seconds;
- TopK against L1 at equal L0: the L1 frontier's test MSE at the TopK run's L0,
  interpolated linearly in log L0 between the two L1 runs around it (blank outside
  the λ sweep's range).
"""

from __future__ import annotations

import json
import math
import pathlib

from absl import app, flags, logging

from aejax import analysis, code_stats, data as data_lib, models, trainer
from experiments.configs import base, topk as topk_config

DEFAULT_KS = (4, 8, 16, 32, 64)
DEFAULT_WIDTHS = (32, 1024)
DEFAULT_L1_WEIGHTS = ("1e-6", "3e-6", "1e-5", "3e-5", "1e-4", "3e-4", "1e-3", "3e-3")
DEFAULT_NOAUX_KS = (32,)
DEFAULT_AUXK_WEIGHT = 1 / 32


def _define_flags() -> None:
  """Defines the command's flags; only when run as a program, so that importing this
  module (experiments.report calls its functions) clashes with no other flags."""
  flags.DEFINE_string("data_dir", "", "Folder of the MNIST IDX files "
                      "(empty: $AEJAX_DATA_DIR, then the usual search).")
  flags.DEFINE_string("dataset", "mnist", "config.dataset of every run.")
  flags.DEFINE_string("workdir", "runs/frontier", "Folder for the runs and tables.")
  flags.DEFINE_integer("num_epochs", 3, "Epochs of every run.")
  flags.DEFINE_integer("batch_size", 128, "Batch size of every run.")
  flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate (cosine).")
  flags.DEFINE_list("ks", [str(k) for k in DEFAULT_KS], "TopK's k values.")
  flags.DEFINE_list("widths", [str(w) for w in DEFAULT_WIDTHS], "Code widths.")
  flags.DEFINE_list("l1_weights", list(DEFAULT_L1_WEIGHTS),
                    "λ of the L1 activity term (mse=1, l1_activity=λ).")
  flags.DEFINE_list("noaux_ks", [str(k) for k in DEFAULT_NOAUX_KS], "The k values also "
                    "trained without AuxK, at the widest width (dead fraction with and "
                    "without).")
  flags.DEFINE_float("auxk_weight", DEFAULT_AUXK_WEIGHT, "Weight of the AuxK term.")


def run_configs(*, widths=DEFAULT_WIDTHS, ks=DEFAULT_KS, l1_weights=DEFAULT_L1_WEIGHTS,
                noaux_ks=DEFAULT_NOAUX_KS, auxk_weight: float = DEFAULT_AUXK_WEIGHT,
                dataset: str = "mnist", data_dir: str = "", num_epochs: int = 3,
                batch_size: int = 128, learning_rate: float = 1e-3
                ) -> list[tuple[str, dict, object]]:
  """``(name, description, config)`` for every run, the widest width first. A width's
  L1 runs are one sweep (``l1_w32``) whose members are its λ, written as strings in
  their row names (``l1_w32_lambda1e-4``)."""
  widths = sorted((int(w) for w in widths), reverse=True)
  runs = []
  for width in widths:
    for k in (int(k) for k in ks):
      if k <= width:
        runs.append(_topk(width, k, aux=True, auxk_weight=auxk_weight))
    if l1_weights:
      config = base.get_config("mlp")
      config.model.code_size = width
      config.losses = f"mse=1, l1_activity={l1_weights[0]}"
      config.sweep = f"losses.l1_activity={','.join(l1_weights)}"
      runs.append((f"l1_w{width}", {"model": "l1", "width": width,
                                    "l1_weights": [str(w) for w in l1_weights]}, config))
    if width == widths[0]:
      runs += [_topk(width, int(k), aux=False, auxk_weight=auxk_weight)
               for k in noaux_ks if int(k) <= width]
  for name, _, config in runs:
    config.name = name
    config.dataset = dataset
    config.data_dir = data_dir
    config.num_epochs = num_epochs
    config.batch_size = batch_size
    config.learning_rate = learning_rate
  return runs


def _topk(width: int, k: int, aux: bool, auxk_weight: float):
  config = topk_config.get_config()
  config.model.width, config.model.k = width, k
  config.losses = f"mse=1, {topk_config.AUXK_TERM}={auxk_weight}" if aux else "mse=1"
  name = f"topk_w{width}_k{k}" + ("" if aux else "_noaux")
  return name, {"model": "topk", "width": width, "k": k, "auxk": aux}, config


def measure(name: str, config, root: pathlib.Path, dataset) -> list[dict]:
  """Trains (or finds) one run and returns its test MSE, code statistics and
  seconds: one dict, or one per member of a sweep (its training seconds are the
  whole program's, every member's together)."""
  workdir = root / name
  results = trainer.train_and_evaluate(config, str(workdir))
  members = results.get("members", [results])
  out = []
  for i, member in enumerate(members):
    restored = analysis.load_run(workdir, member=i)
    stats = code_stats.code_statistics(
        models.compiled_apply(restored.model, "encode"),
        models.compiled_apply(restored.model, "decode"), restored.variables,
        dataset.train_images, dataset.test_images, config.eval_batch_size)
    out.append({"test_mse": member["test"]["mse"], "train_seconds": results["train_seconds"],
                "epochs": results["epochs"], **stats})
  return out


def l1_mse_at(l0: float, l1_runs: list[dict]) -> float | None:
  """The L1 frontier's test MSE at ``l0``, linear in log L0 between the L1 runs around
  it; None outside their range."""
  points = sorted((r["l0"], r["test_mse"]) for r in l1_runs if r["l0"] > 0)
  for (a, ma), (b, mb) in zip(points, points[1:]):
    if a <= l0 <= b:
      t = 0.0 if b == a else (math.log(l0) - math.log(a)) / (math.log(b) - math.log(a))
      return ma + t * (mb - ma)
  return None


def tables(rows: list[dict]) -> str:
  lines = ["| run | width | setting | L0 | test MSE | FVE | dead fraction | train s |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    setting = (f"k={r['k']}" + ("" if r["auxk"] else ", no AuxK") if r["model"] == "topk"
               else f"λ={r['l1_weight']:g}")
    lines.append(f"| {r['model']} | {r['width']} | {setting} | {r['l0']:.1f} | "
                 f"{r['test_mse']:.5f} | {r['fraction_variance_explained']:.3f} | "
                 f"{r['dead_fraction']:.3f} | {r['train_seconds']:.0f} |")
  lines += ["", "| width | k | TopK L0 | TopK MSE | L1 MSE at that L0 | TopK ≤ L1 |",
            "|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    if r["model"] != "topk" or not r["auxk"]:
      continue
    l1 = l1_mse_at(r["l0"], [s for s in rows if s["model"] == "l1" and s["width"] == r["width"]])
    verdict = "" if l1 is None else ("yes" if r["test_mse"] <= l1 else "no")
    l1_text = "—" if l1 is None else f"{l1:.5f}"
    lines.append(f"| {r['width']} | {r['k']} | {r['l0']:.1f} | {r['test_mse']:.5f} | "
                 f"{l1_text} | {verdict} |")
  return "\n".join(lines)


def frontier_rows(runs: list[tuple[str, dict, object]], root: pathlib.Path, dataset,
                  verbose: bool = True) -> list[dict]:
  """Trains (or finds) every run of ``run_configs`` under ``root`` and returns one row
  per run (its description and ``measure``'s figures); ``root/frontier.json`` keeps
  the rows measured so far, so a rerun measures only what is new."""
  root.mkdir(parents=True, exist_ok=True)
  out_json = root / "frontier.json"
  done = json.loads(out_json.read_text())["runs"] if out_json.exists() else {}
  rows = []
  for name, description, config in runs:
    if "l1_weights" in description:  # a sweep: one row per member, named by its λ
      weights = description["l1_weights"]
      names = [f"{name}_lambda{w}" for w in weights]
      described = [{"model": "l1", "width": description["width"], "l1_weight": float(w)}
                   for w in weights]
    else:
      names, described = [name], [description]
    if not all(n in done for n in names):
      for row_name, row_description, figures in zip(
          names, described, measure(name, config, root, dataset)):
        done[row_name] = {**row_description, **figures}
        if verbose:
          print(f"{row_name}: L0 {done[row_name]['l0']:.1f}  test MSE "
                f"{done[row_name]['test_mse']:.5f}  dead {done[row_name]['dead_fraction']:.3f}",
                flush=True)
      out_json.write_text(json.dumps({"runs": done}, indent=1))
    rows += [done[n] for n in names]
  return rows


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  FLAGS = flags.FLAGS
  root = pathlib.Path(FLAGS.workdir)
  runs = run_configs(widths=FLAGS.widths, ks=FLAGS.ks, l1_weights=FLAGS.l1_weights,
                     noaux_ks=FLAGS.noaux_ks, auxk_weight=FLAGS.auxk_weight,
                     dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
                     num_epochs=FLAGS.num_epochs, batch_size=FLAGS.batch_size,
                     learning_rate=FLAGS.learning_rate)
  dataset = data_lib.load(runs[0][2])
  rows = frontier_rows(runs, root, dataset)
  markdown = tables(rows)
  print(markdown)
  (root / "frontier.md").write_text(markdown + "\n")
  done = json.loads((root / "frontier.json").read_text())["runs"]
  (root / "frontier.json").write_text(json.dumps(
      {"runs": done, "dataset": dataset.record()["name"], "num_epochs": FLAGS.num_epochs},
      indent=1))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
