"""Sections 1 to 4, the codes: PCA at equal code size, the code-size sweep, codes as
features for probes, and the 2-D maps."""

from __future__ import annotations

from aejax import analysis, plots
from experiments.report.context import Context
from experiments.report.plan import HS_PCA30_SSE
from experiments.report.results import Features, Maps, PcaSweep


def pca_and_sweep(ctx: Context) -> PcaSweep:
  """PCA-30's error (against Hinton & Salakhutdinov's on MNIST), and PCA against the
  vanilla autoencoder at each code size k, on the runs' own data of D dimensions;
  writes error_vs_code_size.png."""
  d = ctx.dimensions
  pca30 = ctx.pca(30)
  pca30_sse = ctx.pca_sse(pca30)
  rows, pca_errors, ae_errors, fraction_zero, never_active = [], [], [], [], []
  sweep = {}
  for k in ctx.plan.sweep_sizes:
    pca = ctx.pca(k)
    pca_sse = ctx.pca_sse(pca)
    name = f"vanilla_k{k}"
    ae_sse = ctx.sse(name)
    sparsity = analysis.code_sparsity(ctx.codes(name, "test"))
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
                                   f"autoencoder {d}-k-{d} (relu code)": ae_errors},
      {"fraction of code units exactly 0 (per example)": fraction_zero,
       "fraction of units never active": never_active},
      ctx.out / "error_vs_code_size.png")
  pca30_numbers = {"components": int(pca30.n_components_), "sse_per_image": pca30_sse}
  off = None
  if ctx.is_mnist:  # their figure is of MNIST's digits; of any other data it says nothing
    off = abs(pca30_sse - HS_PCA30_SSE) / HS_PCA30_SSE
    pca30_numbers.update(hinton_salakhutdinov=HS_PCA30_SSE, relative_difference=off)
  return PcaSweep(
      numbers={"pca30": pca30_numbers, "sweep": sweep},
      pca30_components=int(pca30.n_components_), pca30_sse=pca30_sse, pca30_off=off,
      rows=rows, epochs=ctx.results[f"vanilla_k{ctx.plan.sweep_sizes[0]}"]["epochs"],
      train_images=len(ctx.train_u8), test_images=len(ctx.test_u8), dimensions=d,
      unit="feature" if ctx.is_vectors else "pixel",
      data=ctx.dataset.get("name", "MNIST"), bounded=ctx.bounded)


def probes(ctx: Context) -> Features:
  """Logistic and 5-NN probe accuracy on the raw data, on each dense autoencoder's
  code and on PCA codes of the same size; ``skipped`` (one line, no numbers) when the
  data has no labels to predict."""
  skipped = ctx.unlabelled()
  if skipped:
    return Features(numbers={"features": {"skipped": skipped}}, skipped=skipped)
  probe = lambda train_x, test_x: analysis.probe_accuracy(
      train_x, ctx.probe_labels, test_x, ctx.test_labels)
  raw = probe(ctx.probe_train, ctx.test)
  unit = "features" if ctx.is_vectors else "pixels"
  rows = [[f"raw {unit}", ctx.dimensions, raw["logistic"], raw["knn"], "", ""]]
  numbers, by_run = {"raw_pixels": raw}, {}
  dense = [f"vanilla_k{k}" for k in ctx.plan.sweep_sizes] + ["multilayer", "map2d", "deep"]
  for name in (n for n in dense if n in ctx.runs):  # a study of other data may lack some
    ae = probe(ctx.codes(name, "probe_train"), ctx.codes(name, "test"))
    k = ctx.codes(name, "test").shape[1]
    pca = ctx.pca(k)
    pca_acc = probe(pca.transform(analysis.flat(ctx.probe_train)), pca.transform(ctx.test_flat))
    numbers[name] = by_run[name] = {"code_size": k, "ae": ae, "pca": pca_acc}
    rows.append([name, k, ae["logistic"], ae["knn"], pca_acc["logistic"], pca_acc["knn"]])
  return Features(numbers={"features": numbers}, rows=rows, by_run=by_run,
                  probe_train=len(ctx.probe_train), dimensions=ctx.dimensions)


def maps(ctx: Context, probed: Features) -> Maps:
  """2-D codes coloured by digit (code_maps_2d.png), with their 5-NN accuracies from
  ``probed`` (section 3's); ``skipped`` (one line) without a map2d run."""
  if "map2d" not in ctx.runs:
    skipped = f"No 2-D map: {ctx.runs_dir} holds no map2d run."
    return Maps(numbers={"maps_2d": {"skipped": skipped}}, skipped=skipped)
  d = ctx.dimensions
  pca_codes = ctx.pca(2).transform(ctx.test_flat)
  panels = [("PCA: first two components", pca_codes)]
  if "vanilla_k2" in ctx.runs:
    panels.append((f"vanilla {d}-2-{d} (relu code)", ctx.codes("vanilla_k2", "test")))
  panels.append((f"{d}-512-128-2 (linear code)", ctx.codes("map2d", "test")))
  plots.code_maps_2d(panels, ctx.test_labels, ctx.out / "code_maps_2d.png")
  k2 = probed.by_run.get("vanilla_k2")  # not in a sweep without k = 2, nor without labels
  map2d_probe = probed.by_run.get("map2d")
  knn = {"pca_2": k2["pca"]["knn"] if k2 else None, "vanilla_k2": k2["ae"]["knn"] if k2 else None,
         "map2d": map2d_probe["ae"]["knn"] if map2d_probe else None}
  map2d = ctx.results["map2d"]
  sse = map2d["test"]["sse_per_image"]
  return Maps(numbers={"maps_2d": {"knn_accuracy": knn, "map2d_sse_per_image": sse}},
              knn=knn, map2d_sse=sse, map2d_epochs=map2d["epochs"], dimensions=d)
