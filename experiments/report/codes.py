"""Sections 1 to 4, the codes: PCA at equal code size, the code-size sweep, codes as
features for probes, and the 2-D maps."""

from __future__ import annotations

from aejax import analysis, plots
from experiments.report.context import Context
from experiments.report.plan import HS_PCA30_SSE


def pca_and_sweep(ctx: Context) -> dict:
  """PCA-30's error against Hinton & Salakhutdinov's, and PCA against the vanilla
  autoencoder at each code size k; writes error_vs_code_size.png."""
  pca30_sse = ctx.pca_sse(ctx.pca(30))
  rows, pca_errors, ae_errors, fraction_zero, never_active = [], [], [], [], []
  sweep = {}
  for k in ctx.plan.sweep_sizes:
    pca = ctx.pca(k)
    pca_sse = ctx.pca_sse(pca)
    name = f"vanilla_k{k}"
    ae_sse = ctx.sse(name)
    sparsity = analysis.code_sparsity(ctx.codes(name, "test"))
    d = ctx.test_flat.shape[1]
    sweep[k] = {"pca_components": int(pca.n_components_), "pca_sse_per_image": pca_sse,
                "pca_mse": pca_sse / d, "ae_sse_per_image": ae_sse, "ae_mse": ae_sse / d,
                "ae_sparsity": sparsity}
    pca_errors.append(pca_sse), ae_errors.append(ae_sse)
    fraction_zero.append(sparsity["fraction_zero"])
    never_active.append(sparsity["never_active"] / sparsity["units"])
    rows.append([k, pca.n_components_, pca_sse, ae_sse, pca_sse / d, ae_sse / d,
                 "AE" if ae_sse < pca_sse else "PCA", sparsity["fraction_zero"],
                 sparsity["active_per_example"], sparsity["never_active"]])
  plots.error_vs_code_size(
      list(ctx.plan.sweep_sizes), {"PCA (k components)": pca_errors,
                                   "autoencoder 784-k-784 (relu code)": ae_errors},
      {"fraction of code units exactly 0 (per example)": fraction_zero,
       "fraction of units never active": never_active},
      ctx.out / "error_vs_code_size.png")
  off = abs(pca30_sse - HS_PCA30_SSE) / HS_PCA30_SSE
  pca30 = {"sse_per_image": pca30_sse, "hinton_salakhutdinov": HS_PCA30_SSE,
           "relative_difference": off}
  return {"numbers": {"pca30": pca30, "sweep": sweep}, "rows": rows,
          "epochs": ctx.results[f"vanilla_k{ctx.plan.sweep_sizes[0]}"]["epochs"],
          "train_images": len(ctx.train_u8), "test_images": len(ctx.test_u8)}


def features(ctx: Context) -> dict:
  """Logistic and 5-NN probe accuracy on raw pixels, on each dense autoencoder's code
  and on PCA codes of the same size."""
  probe = lambda train_x, test_x: analysis.probe_accuracy(
      train_x, ctx.probe_labels, test_x, ctx.test_labels)
  raw = probe(ctx.probe_train, ctx.test)
  rows = [["raw pixels", 784, raw["logistic"], raw["knn"], "", ""]]
  numbers = {"raw_pixels": raw}
  dense = [f"vanilla_k{k}" for k in ctx.plan.sweep_sizes] + ["multilayer", "map2d", "deep"]
  for name in dense:
    ae = probe(ctx.codes(name, "probe_train"), ctx.codes(name, "test"))
    k = ctx.codes(name, "test").shape[1]
    pca = ctx.pca(k)
    pca_acc = probe(pca.transform(analysis.flat(ctx.probe_train)), pca.transform(ctx.test_flat))
    numbers[name] = {"code_size": k, "ae": ae, "pca": pca_acc}
    rows.append([name, k, ae["logistic"], ae["knn"], pca_acc["logistic"], pca_acc["knn"]])
  return {"numbers": {"features": numbers}, "rows": rows, "probe_train": ctx.plan.probe_train}


def maps(ctx: Context, features: dict) -> dict:
  """2-D codes coloured by digit (code_maps_2d.png), with their 5-NN accuracies from
  ``features`` (section 3's numbers)."""
  pca_codes = ctx.pca(2).transform(ctx.test_flat)
  panels = [("PCA: first two components", pca_codes)]
  if "vanilla_k2" in ctx.runs:
    panels.append(("vanilla 784-2-784 (relu code)", ctx.codes("vanilla_k2", "test")))
  panels.append(("784-512-128-2 (linear code)", ctx.codes("map2d", "test")))
  plots.code_maps_2d(panels, ctx.test_labels, ctx.out / "code_maps_2d.png")
  k2 = features.get("vanilla_k2")  # not in a sweep without k = 2
  knn = {"pca_2": k2["pca"]["knn"] if k2 else None, "vanilla_k2": k2["ae"]["knn"] if k2 else None,
         "map2d": features["map2d"]["ae"]["knn"]}
  map2d = ctx.results["map2d"]
  return {"numbers": {"maps_2d": {"knn_accuracy": knn,
                                  "map2d_sse_per_image": map2d["test"]["sse_per_image"]}},
          "map2d_epochs": map2d["epochs"]}
