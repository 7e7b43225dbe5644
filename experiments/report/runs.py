"""Sections 8 and 9, the runs themselves: the deep autoencoder against Hinton &
Salakhutdinov's, and every run's training curves and test figures."""

from __future__ import annotations

from aejax import plots
from experiments.report.context import Context
from experiments.report.plan import HS_DEEP_SSE
from experiments.report.results import Curves, Deep


def deep(ctx: Context, pca30_sse: float) -> Deep:
  """The deep autoencoder's test error, its recipe, and ``margin``: how far above
  (positive) or below Hinton & Salakhutdinov's 3.00 it lies. ``pca30_sse``: section
  1's PCA-30 error, which the section sets beside it."""
  result = ctx.results["deep"]
  config = ctx.runs["deep"].config
  sse = result["test"]["sse_per_image"]
  numbers = {"sse_per_image": sse, "hinton_salakhutdinov": HS_DEEP_SSE,
             "epochs": result["epochs"], "train_seconds": result["train_seconds"],
             "at_or_below_3_00": sse <= HS_DEEP_SSE}
  return Deep(numbers={"deep": numbers}, sse=sse, reached=numbers["at_or_below_3_00"],
              margin=sse - HS_DEEP_SSE, pca30_sse=pca30_sse, epochs=result["epochs"],
              train_seconds=result["train_seconds"], weight_decay=config.weight_decay,
              learning_rate=config.learning_rate, schedule=config.schedule,
              batch_size=config.batch_size, backend=result["backend"])


def curves(ctx: Context) -> Curves:
  """Writes curves.png (the sweep, the sparse runs, the others); ``rows``: every run's
  epochs, training seconds and clean test figures."""
  sweep = {f"k={k}": ctx.records[f"vanilla_k{k}"] for k in ctx.plan.sweep_sizes}
  sparse_runs = {f"λ={l1:g}": ctx.records[f"sparse_l1_{l1:g}"] for l1 in ctx.plan.sparse_l1}
  others = {name: ctx.records[name]
            for name in ("multilayer", "map2d", "deep", "conv", "denoising")}
  plots.training_curves({"code-size sweep (vanilla 784-k-784)": sweep,
                         "sparse 784-32-784, L1 weight λ": sparse_runs,
                         "other models": others}, ctx.out / "curves.png")
  rows = [[name, r["epochs"], r["train_seconds"], r["test"]["mse"], r["test"]["sse_per_image"],
           r["test"]["psnr_db"]] for name, r in ctx.results.items()]
  sweeps = [(name, r["members"][0]["overrides"], len(r["members"]))
            for name, r in ctx.results.items() if "members" in r]
  return Curves(numbers={}, rows=rows, sweeps=sweeps)
