"""The report end to end: validate every config, train or reuse every run, let each
section compute its results, and hand them to the writer."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import time

import jax
from absl import logging

from aejax import config as config_lib, data as data_lib, trainer
from experiments import sparsity_frontier
from experiments.report import (codes, compression, contractive, denoising, runs, seeds,
                                sparsity, vae, writer)
from experiments.report.context import Context, from_runs, make_context
from experiments.report.plan import FULL, QUICK, frontier_configs, run_configs
from experiments.report.results import Section


def make_report(workdir: str | pathlib.Path, runs_dir: str | pathlib.Path | None = None,
                data_dir: str = "", quick: bool = False, command: str = "") -> dict:
  """Trains or reuses every run, measures, writes REPORT.md, report.json and figures;
  returns report.json's content."""
  out = pathlib.Path(workdir)
  runs_dir = pathlib.Path(runs_dir) if runs_dir else out / "runs"
  plan = QUICK if quick else FULL
  configs = run_configs(plan, data_dir)
  for config in [*configs.values(), *(c for _, _, c in frontier_configs(plan, data_dir))]:
    config_lib.validate(config)  # every user error before any compute
  dataset = data_lib.load(next(iter(configs.values())))
  out.mkdir(parents=True, exist_ok=True)
  started = time.perf_counter()
  results = {}
  for name, config in configs.items():
    logging.info("Run %s (%d epochs) in %s", name, config.num_epochs, runs_dir / name)
    results[name] = trainer.train_and_evaluate(config, str(runs_dir / name))
  frontier = sparsity_frontier.frontier_rows(frontier_configs(plan, data_dir),
                                             runs_dir / "frontier", dataset, verbose=False)
  trained = time.perf_counter() - started
  done = measure(make_context(plan, dataset, runs_dir, results, out, frontier))
  summary = writer.Summary(
      command=command, dataset=dataset.record(), test_images=plan.test_images,
      runs=len(results), frontier_runs=len(frontier),
      train_seconds=(sum(r["train_seconds"] for r in results.values())
                     + sum(r["train_seconds"] for r in frontier)),
      backend=jax.default_backend(), trained=trained,
      measured=time.perf_counter() - started - trained)
  numbers = writer.write(out, summary, plan, done, results)
  logging.info("Wrote %s", out / "REPORT.md")
  return numbers


def measure(ctx: Context) -> dict[str, Section]:
  """Every section's results, by its key in ``writer.SECTIONS``; the figures go to
  ``ctx.out``. Sections 4, 8 and 12 read results of sections 3, 1 and 7."""
  done = {}

  def timed(name, compute, *args):
    begun = time.perf_counter()
    done[name] = compute(*args)
    logging.info("%s: %.1f s", name, time.perf_counter() - begun)

  timed("sweep", codes.pca_and_sweep, ctx)
  timed("features", codes.probes, ctx)
  timed("maps", codes.maps, ctx, done["features"])
  timed("denoising", denoising.denoising, ctx)
  timed("sparsity", sparsity.sparsity, ctx)
  timed("compression", compression.against_jpeg, ctx)
  timed("deep", runs.deep, ctx, done["sweep"].pca30_sse)
  timed("curves", runs.curves, ctx)
  timed("contractive", contractive.contractive, ctx)
  timed("frontier", sparsity.frontier, ctx)
  timed("vqvae", compression.vqvae, ctx, done["compression"].panels)
  timed("vae", vae.vae, ctx.runs_dir, ctx.out)
  timed("codecs", compression.codecs, ctx)
  timed("seeds", seeds.seeds, ctx.runs_dir / "seeds")
  return done


def codes_report(workdir: str | pathlib.Path, runs_dir: str | pathlib.Path,
                 command: str = "") -> dict:
  """Sections 1 to 4 (PCA against the autoencoder, codes as probe features, 2-D maps)
  on runs trained elsewhere on any one data set: ``runs_dir/vanilla_k<k>`` for each
  code size k of the sweep (``map2d``, ``multilayer``, ``deep`` where present).
  Writes REPORT.md, report.json and figures into ``workdir``; returns report.json."""
  runs_dir, out = pathlib.Path(runs_dir), pathlib.Path(workdir)
  sizes = sorted(int(m.group(1)) for p in runs_dir.glob("vanilla_k*/results.json")
                 if (m := re.fullmatch(r"vanilla_k(\d+)", p.parent.name)))
  if not sizes:
    raise FileNotFoundError(f"{runs_dir} holds no vanilla_k<k> run: train one per code size "
                            "k with experiments/configs/vanilla.py, --config.model.code_size=k.")
  plan = dataclasses.replace(FULL, sweep_sizes=tuple(sizes), test_images=None)
  out.mkdir(parents=True, exist_ok=True)
  ctx = from_runs(runs_dir, plan, out)
  plan = dataclasses.replace(plan, dataset=ctx.dataset["name"])
  done = {"sweep": codes.pca_and_sweep(ctx), "features": codes.probes(ctx)}
  done["maps"] = codes.maps(ctx, done["features"])
  (out / "REPORT.md").write_text(writer.codes_markdown(command, ctx.dataset, done))
  numbers = {"command": command, "dataset": ctx.dataset,
             **{k: v for r in done.values() for k, v in r.numbers.items()}}
  (out / "report.json").write_text(json.dumps(numbers, indent=2, default=float) + "\n")
  return numbers
