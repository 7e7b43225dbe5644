"""Sections 6 and 11, sparse codes: the L1-penalised model's sparsity at each λ, and
the TopK-against-L1 frontier with its dead latents."""

from __future__ import annotations

from aejax import analysis, plots
from experiments import sparsity_frontier
from experiments.report.context import Context
from experiments.report.results import Frontier, Sparsity


def sparsity(ctx: Context) -> Sparsity:
  """Error and test-code sparsity of the sparse model at each L1 weight λ."""
  rows, numbers = [], {}
  for l1 in ctx.plan.sparse_l1:
    name = f"sparse_l1_{l1:g}"
    code = analysis.code_sparsity(ctx.codes(name, "test"))
    sse = ctx.results[name]["test"]["sse_per_image"]
    numbers[name] = {"l1": l1, "sse_per_image": sse, **code}
    rows.append([f"{l1:g}", sse, code["mean_activation"], code["fraction_zero"],
                 code["active_per_example"], code["never_active"]])
  first = f"sparse_l1_{ctx.plan.sparse_l1[0]:g}"
  last = f"sparse_l1_{ctx.plan.sparse_l1[-1]:g}"
  return Sparsity(numbers={"sparsity": numbers}, rows=rows,
                  epochs=ctx.results[first]["epochs"], losses=ctx.runs[last].config.losses)


def frontier(ctx: Context) -> Frontier:
  """Each TopK run's MSE against the L1 runs' at the same L0, and the dead fraction
  of each TopK run trained without AuxK beside those trained with it; writes
  frontier.png."""
  rows = ctx.frontier
  widths = sorted({r["width"] for r in rows})
  _plot_frontier(rows, widths, ctx.out / "frontier.png")
  compared = []
  for r in rows:
    if r["model"] == "topk" and r["auxk"]:
      l1 = sparsity_frontier.l1_mse_at(
          r["l0"], [s for s in rows if s["model"] == "l1" and s["width"] == r["width"]])
      compared.append({"width": r["width"], "k": r["k"], "l0": r["l0"],
                       "topk_mse": r["test_mse"], "l1_mse_at_l0": l1,
                       "dead_fraction": r["dead_fraction"]})
  wins = [c for c in compared if c["l1_mse_at_l0"] is not None]
  dead = [{"k": r["k"], "without_auxk": r["dead_fraction"],
           "with_auxk": [s["dead_fraction"] for s in rows if s["model"] == "topk"
                         and s["auxk"] and s["k"] == r["k"] and s["width"] == r["width"]]}
          for r in rows if r["model"] == "topk" and not r["auxk"]]
  return Frontier(
      numbers={"frontier": {"epochs": ctx.plan.frontier_epochs, "runs": rows,
                            "topk_vs_l1": compared}},
      runs=rows, epochs=ctx.plan.frontier_epochs,
      below=sum(c["topk_mse"] <= c["l1_mse_at_l0"] for c in wins), comparisons=len(wins),
      widest=max(widths), dead=dead, ks=ctx.plan.frontier_ks,
      l1_weights=ctx.plan.frontier_l1, auxk_weight=sparsity_frontier.DEFAULT_AUXK_WEIGHT)


def _plot_frontier(rows: list[dict], widths: list[int], path) -> None:
  """One log-log panel of test MSE against L0 per code width."""
  fig, axes = plots.plt.subplots(1, len(widths), figsize=(4.6 * len(widths), 3.8),
                                 squeeze=False)
  for ax, width in zip(axes[0], widths):
    for model, style, label in (("l1", "s--", "relu + L1 (λ sweep)"),
                                ("topk", "o-", "TopK with AuxK (k sweep)")):
      points = sorted((r["l0"], r["test_mse"]) for r in rows if r["width"] == width
                      and r["model"] == model and r.get("auxk", True) and r["l0"] > 0)
      if points:
        ax.plot(*zip(*points), style, label=label, markersize=4)
    noaux = [(r["l0"], r["test_mse"]) for r in rows if r["width"] == width
             and r["model"] == "topk" and not r["auxk"]]
    if noaux:
      ax.plot(*zip(*noaux), "x", color="k", label="TopK without AuxK")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("L0 (active units per test image)"), ax.set_ylabel("test MSE")
    ax.set_title(f"width {width}", fontsize=10), ax.grid(alpha=0.3), ax.legend(fontsize=7)
  plots._save(fig, path)  # the figure is the report's own; plots has no frontier plot
