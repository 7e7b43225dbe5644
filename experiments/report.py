"""The article's claims, measured: trains (or reuses) every model the study needs,
measures each claim against its baseline and writes REPORT.md with its figures.

    python -m experiments.report --workdir docs --runs_dir runs/report \
        --data_dir path/to/mnist          # full MNIST (about 45 min on 2 CPU cores)
    python -m experiments.report --workdir report_quick --quick   # bundled sample, 1 epoch

Runs live in ``--runs_dir`` (default ``<workdir>/runs``), one workdir each; a run
that is already trained is resumed, i.e. only evaluated again, so a second call
re-measures without retraining (the TopK/L1 frontier's runs live in
``<runs_dir>/frontier``, measured once into its ``frontier.json``). The VAE and IWAE
are not trained here (hundreds of epochs): their section reads ``<runs_dir>/vae`` and
``<runs_dir>/iwae`` if they exist and says how to make them if not. ``<workdir>`` receives REPORT.md, report.json (every
number of the report) and the PNG figures.
"""

from __future__ import annotations

import dataclasses
import json
import logging as pylogging
import pathlib
import shlex
import sys
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from aejax import analysis, data as data_lib, engine, losses, plots, train
from experiments import sparsity_frontier
from experiments.configs import (base, contractive, conv, deep, denoising, multilayer, sparse,
                                 vanilla, vqvae)


def _define_flags() -> None:
  """Defines the command's flags; only when run as a program, so that importing this
  module (tests, notebooks, next to experiments.benchmark) clashes with no flags."""
  flags.DEFINE_string("workdir", None, "Folder for REPORT.md, report.json, figures.")
  flags.DEFINE_string("runs_dir", "", "Folder of the runs (default <workdir>/runs).")
  flags.DEFINE_string("data_dir", "", "Folder of the MNIST IDX files "
                      "(default: $AEJAX_DATA_DIR, then the bundled sample).")
  flags.DEFINE_bool("quick", False, "Bundled sample, 1 epoch per run, small sweeps.")
  flags.mark_flags_as_required(["workdir"])

# Hinton & Salakhutdinov, Science 313:504 (2006), MNIST test, squared error per image.
HS_PCA30_SSE = 13.87
HS_DEEP_SSE = 3.00
CORRUPTIONS = ("gaussian", "masking", "salt_and_pepper")
# Burda, Grosse & Salakhutdinov 2016, table 1, one stochastic layer, test NLL (nats).
BURDA_VAE_NLL = 86.76
BURDA_IWAE_NLL = 84.78
FIGURES = ("curves.png", "error_vs_code_size.png", "code_maps_2d.png", "denoising.png",
           "denoising_grid.png", "compression.png", "frontier.png", "vqvae_rate.png")
# Trained elsewhere (see section 12); read from <runs_dir>/<name> when present.
LONG_RUNS = {"vae": "experiments/configs/vae.py", "iwae": "experiments/configs/vae.py:iwae"}


@dataclasses.dataclass(frozen=True)
class Plan:
  """What the study trains and measures."""
  dataset: str
  sweep_sizes: tuple[int, ...]
  sparse_l1: tuple[float, ...]
  noise_levels: tuple[float, ...]
  jpeg_qualities: tuple[int, ...]
  compression_sizes: tuple[int, ...]  # sweep models used as compressors
  probe_train: int  # training images the probes are fit on
  num_epochs: int | None  # None: each config's own
  test_images: int | None = None  # measure on the first n test images (None: all)
  # Contractive vs plain vs denoising: epochs of the three MLPs, input noise levels.
  cae_epochs: int = 2
  cae_sigmas: tuple[float, ...] = (0.05, 0.1)
  # TopK vs L1 (experiments/sparsity_frontier.py's sweep).
  frontier_widths: tuple[int, ...] = sparsity_frontier.DEFAULT_WIDTHS
  frontier_ks: tuple[int, ...] = sparsity_frontier.DEFAULT_KS
  frontier_l1: tuple[str, ...] = sparsity_frontier.DEFAULT_L1_WEIGHTS
  frontier_noaux_ks: tuple[int, ...] = sparsity_frontier.DEFAULT_NOAUX_KS
  frontier_epochs: int = 3
  # VQ-VAE settings: (encoder features, codebook size K); the grid is 28 / 2^len(features).
  vqvae_settings: tuple[tuple[tuple[int, ...], int], ...] = (
      ((16, 32), 16), ((16, 32), 512), ((16,), 16))
  vqvae_epochs: int = 1


# The frontier and VQ-VAE sweeps are cut to what a pinned CPU core trains in about
# half an hour: k = 8 and 32, and the λ whose L0 brackets them (the script's full
# sweep: python -m experiments.sparsity_frontier); three VQ-VAEs inside JPEG's range
# of scan sizes (55, 98 and 147 bytes), 3 epochs each (about 3 minutes apiece).
FULL = Plan(dataset="mnist", sweep_sizes=(2, 4, 8, 16, 32, 64, 128, 784, 1024),
            sparse_l1=(0.0, 1e-5, 1e-4, 1e-3), noise_levels=(0.1, 0.3, 0.5, 0.7, 0.9),
            jpeg_qualities=(5, 10, 20, 30, 50, 75, 90), compression_sizes=(8, 16, 32, 64),
            probe_train=10_000, num_epochs=None, frontier_ks=(8, 32),
            frontier_l1=("1e-4", "3e-4", "1e-3", "3e-3"),
            vqvae_settings=(((16, 32), 512), ((32,), 16), ((32,), 64)), vqvae_epochs=3)
QUICK = Plan(dataset="mnist_sample", sweep_sizes=(2, 32), sparse_l1=(0.0, 1e-4),
             noise_levels=(0.3, 0.7), jpeg_qualities=(10, 90), compression_sizes=(32,),
             probe_train=1000, num_epochs=1, test_images=500, cae_epochs=1,
             frontier_widths=(32,), frontier_ks=(8,), frontier_l1=("1e-4", "1e-3"),
             frontier_noaux_ks=(8,), frontier_epochs=1, vqvae_settings=(((16,), 16),),
             vqvae_epochs=1)


def map2d_config() -> ml_collections.ConfigDict:
  """A 784-512-128-2 autoencoder with a linear 2-unit code, for the 2-D map."""
  config = base.get_config()
  config.name = "map2d"
  config.model.hidden = (512, 128)
  config.model.code_size = 2
  config.model.code_activation = "linear"
  config.num_epochs = 10
  return config


def run_configs(plan: Plan, data_dir: str) -> dict[str, ml_collections.ConfigDict]:
  """Every run of the study, by workdir name."""
  configs = {}
  for k in plan.sweep_sizes:
    config = vanilla.get_config()
    config.name = f"vanilla_k{k}"
    config.model.code_size = k
    configs[config.name] = config
  configs["multilayer"] = multilayer.get_config()
  for l1 in plan.sparse_l1:
    config = sparse.get_config()
    config.name = f"sparse_l1_{l1:g}"
    # The config's own reconstruction term, with the L1 weight set to λ (0: dropped).
    weights = {name: w for name, w in losses.parse_weights(config.losses).items()
               if name != "l1_activity"}
    if l1:
      weights["l1_activity"] = l1
    config.losses = ", ".join(f"{name}={w:g}" for name, w in weights.items())
    configs[config.name] = config
  configs["map2d"] = map2d_config()
  configs["deep"] = deep.get_config()
  configs["conv"] = conv.get_config()
  configs["denoising"] = denoising.get_config()
  configs.update(cae_configs(plan))
  for features, k in plan.vqvae_settings:
    config = vqvae.get_config()
    config.model.features, config.model.num_embeddings = features, k
    config.num_epochs = plan.vqvae_epochs
    config.name = f"vqvae_f{'-'.join(map(str, features))}_K{k}"
    configs[config.name] = config
  for config in configs.values():
    config.dataset = plan.dataset
    config.data_dir = data_dir if plan.dataset == "mnist" else ""
    if plan.num_epochs is not None:
      config.num_epochs = plan.num_epochs
      # A warm-up as long as the run would leave the cosine no steps to decay over.
      config.warmup_epochs = min(config.warmup_epochs, 0.2 * plan.num_epochs)
  return configs


CAE_RUNS = ("cae_plain", "cae_denoising", "cae_contractive")


def cae_configs(plan: Plan) -> dict[str, ml_collections.ConfigDict]:
  """784-64-784 with a sigmoid code (the contractive config's network), trained alike
  three ways: plain MSE; on gaussian-noised inputs (the denoising config's noise,
  factor 0.5); with the contractive penalty (the contractive config's λ)."""
  contractive_config = contractive.get_config()
  configs = {}
  for name in CAE_RUNS:
    config = contractive_config if name == "cae_contractive" else base.get_config("mlp")
    config = ml_collections.ConfigDict(config.to_dict())
    if name != "cae_contractive":
      config.model.code_size = contractive_config.model.code_size
      config.model.code_activation = contractive_config.model.code_activation
    if name == "cae_denoising":
      denoising_config = denoising.get_config()
      config.corruption.name = denoising_config.corruption.name
      config.corruption.level = denoising_config.corruption.level
    config.name = name
    config.num_epochs = plan.cae_epochs
    configs[name] = config
  return configs


def frontier_configs(plan: Plan, data_dir: str) -> list[tuple[str, dict, object]]:
  """sparsity_frontier's runs for the plan's sweep."""
  return sparsity_frontier.run_configs(
      widths=plan.frontier_widths, ks=plan.frontier_ks, l1_weights=plan.frontier_l1,
      noaux_ks=plan.frontier_noaux_ks, dataset=plan.dataset,
      data_dir=data_dir if plan.dataset == "mnist" else "", num_epochs=plan.frontier_epochs)


# ---------------------------------------------------------------------- sections


def _table(header: list[str], rows: list[list]) -> str:
  def cell(v):
    if isinstance(v, float):
      return "∞" if v == float("inf") else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


class Study:
  """Holds the data, the runs and the PCA fits; each ``section_*`` returns markdown
  and stores its numbers in ``self.numbers``."""

  def __init__(self, plan: Plan, dataset: data_lib.Dataset, runs_dir: pathlib.Path,
               results: dict[str, dict], out: pathlib.Path,
               frontier: list[dict] | None = None):
    self.plan, self.dataset, self.out, self.results = plan, dataset, out, results
    self.runs_dir, self.frontier = runs_dir, frontier or []
    self._rate_panels: dict = {}
    self.runs = {name: analysis.load_run(runs_dir / name) for name in results}
    self.records = {name: _metrics(runs_dir / name) for name in results}
    self.train_u8 = dataset.train_images
    self.test_u8 = dataset.test_images[:plan.test_images]
    self.test_labels = dataset.test_labels[:plan.test_images]
    self.test = analysis.to_float(self.test_u8)
    self.test_flat = analysis.flat(self.test)
    self.train_flat = analysis.flat(analysis.to_float(self.train_u8))
    self.probe_train = analysis.to_float(self.train_u8[:plan.probe_train])
    self.probe_labels = dataset.train_labels[:plan.probe_train]
    self.numbers: dict = {}
    self._pca: dict[int, object] = {}
    self._codes: dict[tuple[str, str], np.ndarray] = {}

  def pca(self, k: int):
    if k not in self._pca:
      self._pca[k] = analysis.fit_pca(self.train_flat, k)
    return self._pca[k]

  def codes(self, name: str, split: str) -> np.ndarray:
    """Codes of run ``name`` on 'test' or 'probe_train', flattened to [N, K]."""
    if (name, split) not in self._codes:
      images = self.test if split == "test" else self.probe_train
      self._codes[name, split] = analysis.flat(self.runs[name].encode(images))
    return self._codes[name, split]

  def sse(self, name: str, images: np.ndarray | None = None) -> float:
    images = self.test if images is None else images
    return float(np.mean(analysis.sse_per_image(
        reference=images, reconstruction=self.runs[name].reconstruct(images))))

  def pca_sse(self, pca) -> float:
    """Mean squared error per test image of ``pca``'s reconstruction."""
    return float(np.mean(analysis.sse_per_image(
        reference=self.test_flat, reconstruction=analysis.pca_reconstruct(pca, self.test_flat))))

  # --------------------------------------------------------------- 1 and 2

  def section_pca_and_sweep(self) -> str:
    pca30 = self.pca(30)
    pca30_sse = self.pca_sse(pca30)
    rows, pca_errors, ae_errors, fraction_zero, never_active = [], [], [], [], []
    sweep = {}
    for k in self.plan.sweep_sizes:
      pca = self.pca(k)
      pca_sse = self.pca_sse(pca)
      name = f"vanilla_k{k}"
      ae_sse = self.sse(name)
      sparsity = analysis.code_sparsity(self.codes(name, "test"))
      d = self.test_flat.shape[1]
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
        list(self.plan.sweep_sizes), {"PCA (k components)": pca_errors,
                                      "autoencoder 784-k-784 (relu code)": ae_errors},
        {"fraction of code units exactly 0 (per example)": fraction_zero,
         "fraction of units never active": never_active},
        self.out / "error_vs_code_size.png")
    off = abs(pca30_sse - HS_PCA30_SSE) / HS_PCA30_SSE
    self.numbers["pca30"] = {"sse_per_image": pca30_sse, "hinton_salakhutdinov": HS_PCA30_SSE,
                             "relative_difference": off}
    self.numbers["sweep"] = sweep
    epochs = self.results[f"vanilla_k{self.plan.sweep_sizes[0]}"]["epochs"]
    return (
        "## 1. PCA at equal code size, and 2. the code-size sweep\n\n"
        f"PCA with 30 components (fit on the {len(self.train_u8):,} training images) gives "
        f"**{pca30_sse:.2f}** squared error per image on the {len(self.test_u8):,} test "
        f"images; Hinton & Salakhutdinov (2006) report {HS_PCA30_SSE}: "
        f"{100 * off:.1f}% apart ({'within' if off <= 0.05 else 'NOT within'} 5%).\n\n"
        f"Each autoencoder is the article's vanilla model 784-k-784 (relu code, sigmoid "
        f"output, MSE, Adam) trained {_epochs(epochs)}; PCA keeps min(k, 784) components, so "
        "its error is 0 from k = 784 on. SSE = squared error summed over the 784 pixels "
        "(in [0, 1]), averaged over test images; MSE = SSE / 784. Sparsity columns are "
        "the autoencoder's test codes: fraction of units exactly 0 per example, active "
        "units per example (L0), units never active on the whole test set.\n\n"
        + _table(["k", "PCA comps", "PCA SSE/img", "AE SSE/img", "PCA MSE", "AE MSE",
                  "lower error", "AE fraction 0", "AE L0", "AE never active"], rows)
        + "\n![error vs code size](error_vs_code_size.png)\n")

  # --------------------------------------------------------------------- 3

  def section_features(self) -> str:
    test_labels = self.test_labels
    probe = lambda train_x, test_x: analysis.probe_accuracy(
        train_x, self.probe_labels, test_x, test_labels)
    raw = probe(self.probe_train, self.test)
    rows = [["raw pixels", 784, raw["logistic"], raw["knn"], "", ""]]
    features = {"raw_pixels": raw}
    dense = [f"vanilla_k{k}" for k in self.plan.sweep_sizes] + ["multilayer", "map2d", "deep"]
    for name in dense:
      ae = probe(self.codes(name, "probe_train"), self.codes(name, "test"))
      k = self.codes(name, "test").shape[1]
      pca = self.pca(k)
      pca_acc = probe(pca.transform(analysis.flat(self.probe_train)),
                      pca.transform(self.test_flat))
      features[name] = {"code_size": k, "ae": ae, "pca": pca_acc}
      rows.append([name, k, ae["logistic"], ae["knn"], pca_acc["logistic"], pca_acc["knn"]])
    self.numbers["features"] = features
    return (
        "## 3. Codes as features\n\n"
        f"Test accuracy of a logistic-regression probe (standardised features, lbfgs, "
        f"at most 300 iterations) and of 5-nearest-neighbours (Euclidean) fit on the "
        f"codes of the first {self.plan.probe_train:,} training images, against PCA codes "
        "with as many components (min(k, 784)) and against raw pixels.\n\n"
        + _table(["model", "code size", "AE logistic", "AE 5-NN", "PCA logistic",
                  "PCA 5-NN"], rows))

  # --------------------------------------------------------------------- 4

  def section_maps(self) -> str:
    labels = self.test_labels
    pca_codes = self.pca(2).transform(self.test_flat)
    panels = [("PCA: first two components", pca_codes)]
    if "vanilla_k2" in self.runs:
      panels.append(("vanilla 784-2-784 (relu code)", self.codes("vanilla_k2", "test")))
    panels.append(("784-512-128-2 (linear code)", self.codes("map2d", "test")))
    plots.code_maps_2d(panels, labels, self.out / "code_maps_2d.png")
    knn = {"pca_2": self.numbers["features"]["vanilla_k2"]["pca"]["knn"]
           if "vanilla_k2" in self.numbers["features"] else None,
           "vanilla_k2": self.numbers["features"].get("vanilla_k2", {}).get("ae", {}).get("knn"),
           "map2d": self.numbers["features"]["map2d"]["ae"]["knn"]}
    self.numbers["maps_2d"] = {"knn_accuracy": knn,
                               "map2d_sse_per_image": self.results["map2d"]["test"]["sse_per_image"]}
    fmt = lambda v: "—" if v is None else f"{v:.3f}"
    return (
        "## 4. 2-D maps\n\n"
        "Test codes coloured by digit (first 5,000 test images). 5-NN accuracy on the "
        f"2-D codes: PCA {fmt(knn['pca_2'])}, vanilla 784-2-784 {fmt(knn['vanilla_k2'])}, "
        f"784-512-128-2 {fmt(knn['map2d'])} (squared error per image "
        f"{self.results['map2d']['test']['sse_per_image']:.2f}, "
        f"{_epochs(self.results['map2d']['epochs'])}).\n\n"
        "![2-D codes](code_maps_2d.png)\n")

  # --------------------------------------------------------------------- 5

  def section_denoising(self) -> str:
    key = jax.random.key(2006)
    models = ("denoising", "conv")
    scores: dict = {}
    rows = []
    clean = {m: self.runs[m].reconstruct(self.test) for m in models}
    rows.append(["none (clean input)", 0, "∞", *[analysis.psnr_db(reference=self.test,
                 reconstruction=clean[m]) for m in models], 1.0,
                 *[analysis.ssim(reference=self.test, reconstruction=clean[m]) for m in models]])
    grid = [("clean", analysis.to_float(self.test_u8[_one_per_digit(self.test_labels)]))]
    for c, corruption in enumerate(CORRUPTIONS):
      series = {"noisy input": {"psnr_db": [], "ssim": []},
                **{f"{m} model output": {"psnr_db": [], "ssim": []} for m in models}}
      for l, level in enumerate(self.plan.noise_levels):
        noisy = analysis.corrupt(self.test, corruption, level,
                                 jax.random.fold_in(jax.random.fold_in(key, c), l))
        outputs = {"noisy input": noisy,
                   **{f"{m} model output": self.runs[m].reconstruct(noisy) for m in models}}
        row_psnr, row_ssim = [], []
        for name, images in outputs.items():
          psnr = analysis.psnr_db(reference=self.test, reconstruction=images)
          similarity = analysis.ssim(reference=self.test, reconstruction=images)
          series[name]["psnr_db"].append(psnr), series[name]["ssim"].append(similarity)
          row_psnr.append(psnr), row_ssim.append(similarity)
        rows.append([corruption, level, *row_psnr, *row_ssim])
        if l == len(self.plan.noise_levels) // 2:
          shown = _one_per_digit(self.test_labels)
          grid += [(f"{corruption} {level:g}", noisy[shown]),
                   *[(f"{m} model", outputs[f"{m} model output"][shown]) for m in models]]
      scores[corruption] = series
    plots.denoising_curves(list(self.plan.noise_levels), scores, self.out / "denoising.png")
    plots.reconstruction_grid(grid, self.out / "denoising_grid.png")
    self.numbers["denoising"] = {"levels": list(self.plan.noise_levels), "scores": scores}
    level = self.results["denoising"]["corruption"]
    return (
        "## 5. Denoising\n\n"
        "PSNR (of the mean squared error over the test set) and mean SSIM against the "
        "clean test image, of the corrupted input and of each model's output on it. "
        f"The denoising model is the article's conv autoencoder trained on gaussian "
        f"noise of factor {level['level']:g} ({_epochs(self.results['denoising']['epochs'])}); "
        f"the conv model is the same network trained on clean images "
        f"({_epochs(self.results['conv']['epochs'])}), as a reference. The noise level is "
        "the gaussian noise factor, or the fraction of pixels hit for masking and "
        "salt-and-pepper.\n\n"
        + _table(["corruption", "level", "PSNR noisy", "PSNR denoising", "PSNR conv",
                  "SSIM noisy", "SSIM denoising", "SSIM conv"], rows)
        + "\n![denoising curves](denoising.png)\n\n"
        "Rows: clean; then for each corruption at the middle level, the corrupted input "
        "and the two models' outputs.\n\n![denoising examples](denoising_grid.png)\n")

  # --------------------------------------------------------------------- 6

  def section_sparsity(self) -> str:
    rows, numbers = [], {}
    for l1 in self.plan.sparse_l1:
      name = f"sparse_l1_{l1:g}"
      sparsity = analysis.code_sparsity(self.codes(name, "test"))
      sse = self.results[name]["test"]["sse_per_image"]
      numbers[name] = {"l1": l1, "sse_per_image": sse, **sparsity}
      rows.append([f"{l1:g}", sse, sparsity["mean_activation"], sparsity["fraction_zero"],
                   sparsity["active_per_example"], sparsity["never_active"]])
    self.numbers["sparsity"] = numbers
    first = f"sparse_l1_{self.plan.sparse_l1[0]:g}"
    last = f"sparse_l1_{self.plan.sparse_l1[-1]:g}"
    return (
        "## 6. Sparsity\n\n"
        f"The sparse model of `experiments/configs/sparse.py`, 784-32-784 with a relu "
        f"code, trained {_epochs(self.results[first]['epochs'])} on its reconstruction term "
        f"plus λ·Σ|code| (losses `{self.runs[last].config.losses}` at the largest λ; "
        "λ = 0 is the same network without the penalty). On the test set: mean |code|, "
        "fraction of "
        "code units exactly 0 per example, active units per example (L0), units never "
        "active.\n\n"
        + _table(["λ", "SSE/img", "mean activation", "fraction 0", "L0 (of 32)",
                  "never active"], rows))

  # --------------------------------------------------------------------- 7

  def section_compression(self) -> str:
    datasets = {"MNIST test": self.test_u8, "inverted digits": analysis.inverted(self.test_u8),
                "digits shifted 4 px": analysis.shifted(self.test_u8)}
    compressors = [f"vanilla_k{k}" for k in self.plan.compression_sizes] + ["deep"]
    ranges = {name: analysis.code_range(self.codes(name, "probe_train")) for name in compressors}
    panels, numbers, rows = {}, {}, []
    for title, images_u8 in datasets.items():
      images = analysis.to_float(images_u8)
      series, entries = {}, []
      jpeg_file, jpeg_scan = ([], []), ([], [])
      for quality in self.plan.jpeg_qualities:
        decoded, file_bytes, scan_bytes = analysis.jpeg_roundtrip(images_u8, quality)
        psnr = analysis.psnr_db(reference=images, reconstruction=analysis.to_float(decoded))
        jpeg_file[0].append(float(file_bytes.mean())), jpeg_file[1].append(psnr)
        jpeg_scan[0].append(float(scan_bytes.mean())), jpeg_scan[1].append(psnr)
        entries.append({"method": f"JPEG q={quality}", "file_bytes": float(file_bytes.mean()),
                        "scan_bytes": float(scan_bytes.mean()), "psnr_db": psnr})
      series["JPEG (whole file)"] = jpeg_file
      series["JPEG (scan only)"] = jpeg_scan
      for bits in (8, 4):
        sizes, psnrs = [], []
        for name in compressors:
          run = self.runs[name]
          codes = analysis.flat(run.encode(images))
          low, high = ranges[name]
          decoded = run.decode(analysis.dequantize(analysis.quantize(codes, low, high, bits),
                                                   low, high, bits))
          psnr = analysis.psnr_db(reference=images, reconstruction=decoded)
          size = analysis.code_bytes(codes.shape[1], bits)
          sizes.append(size), psnrs.append(psnr)
          entries.append({"method": f"{name} {bits}-bit code", "file_bytes": size,
                          "scan_bytes": size, "psnr_db": psnr})
        order = np.argsort(sizes)
        series[f"autoencoder, {bits}-bit code"] = ([sizes[i] for i in order],
                                                   [psnrs[i] for i in order])
      panels[title] = series
      numbers[title] = entries
      rows += [[title, e["method"], e["file_bytes"], e["scan_bytes"], e["psnr_db"]]
               for e in entries]
    plots.rate_distortion(panels, self.out / "compression.png")
    self._rate_panels = panels
    self.numbers["compression"] = numbers
    return (
        "## 7. Compression against JPEG\n\n"
        "Bytes per image against PSNR on the test images, on MNIST itself and on two "
        "data sets no model was trained on (the same digits inverted, 255 − x; and "
        "moved 4 pixels right and down). JPEG: Pillow's baseline encoder at each "
        "quality; *file bytes* count the whole file it writes (headers, quantisation and "
        "Huffman tables included), *scan bytes* only the entropy-coded scan, as if the "
        "tables were shared by all images. Autoencoder: its code, each unit quantized "
        "uniformly to 8 or 4 bits between its minimum and maximum over the first "
        f"{self.plan.probe_train:,} training images (values outside are clipped), "
        "stored as k × bits / 8 bytes with no entropy coding; the decoder and the "
        "2 × k range values are shared side information, like JPEG's standard tables, "
        "and not counted.\n\n"
        + _table(["data", "method", "file bytes", "scan bytes", "PSNR dB"], rows)
        + "\n![rate distortion](compression.png)\n")

  # --------------------------------------------------------------------- 8

  def section_deep(self) -> str:
    result = self.results["deep"]
    config = self.runs["deep"].config
    sse = result["test"]["sse_per_image"]
    reached = sse <= HS_DEEP_SSE
    self.numbers["deep"] = {"sse_per_image": sse, "hinton_salakhutdinov": HS_DEEP_SSE,
                            "epochs": result["epochs"], "train_seconds": result["train_seconds"],
                            "at_or_below_3_00": reached}
    # Four decimals below: a figure this close to 3.00 must not round onto it.
    return (
        "## 8. The deep autoencoder of Hinton & Salakhutdinov\n\n"
        "784-1000-500-250-30 (relu hidden layers, linear 30-unit code) and its mirror, "
        "sigmoid output, MSE, Adam without RBM pretraining "
        f"(`experiments/configs/deep.py`): weight decay {config.get('weight_decay', 0.0):g}, "
        f"learning rate {config.learning_rate:g}, {config.schedule} schedule, "
        f"batch {config.batch_size}, "
        f"{_epochs(result['epochs'])} ({result['train_seconds'] / 60:.1f} min of training on "
        f"{result['backend']}).\n\n"
        + _table(["model", "test SSE/img"], [
            ["PCA, 30 components (here)", self.numbers["pca30"]["sse_per_image"]],
            ["Hinton & Salakhutdinov 2006, PCA 30", f"{HS_PCA30_SSE:.2f}"],
            ["Hinton & Salakhutdinov 2006, deep AE (RBM pretraining)", f"{HS_DEEP_SSE:.2f}"],
            ["deep AE here (Adam, no pretraining)", f"{sse:.4f}"]])
        + f"\nVerdict: {sse:.4f} {'≤' if reached else '>'} {HS_DEEP_SSE:.2f}, so this recipe "
        + (f"reaches their figure ({HS_DEEP_SSE - sse:.4f} below it)" if reached
           else f"does not reach their figure ({sse - HS_DEEP_SSE:.4f} above it)") + ".\n")

  # --------------------------------------------------------------------- 9

  def section_curves(self) -> str:
    sweep = {f"k={k}": self.records[f"vanilla_k{k}"] for k in self.plan.sweep_sizes}
    sparse_runs = {f"λ={l1:g}": self.records[f"sparse_l1_{l1:g}"] for l1 in self.plan.sparse_l1}
    others = {name: self.records[name]
              for name in ("multilayer", "map2d", "deep", "conv", "denoising")}
    plots.training_curves({"code-size sweep (vanilla 784-k-784)": sweep,
                           "sparse 784-32-784, L1 weight λ": sparse_runs,
                           "other models": others}, self.out / "curves.png")
    rows = [[name, r["epochs"], r["train_seconds"], r["test"]["mse"], r["test"]["sse_per_image"],
             r["test"]["psnr_db"]] for name, r in self.results.items()]
    return (
        "## 9. Training curves, and every run\n\n"
        "The training objective per epoch (solid: test, dashed: train; the denoising "
        "model's objective sees noisy inputs, the sparse models' includes the L1 term).\n\n"
        "![training curves](curves.png)\n\n"
        "Every run of this report, evaluated on clean test images (`results.json` of "
        "its workdir):\n\n"
        + _table(["run", "epochs", "train s", "test MSE", "SSE/img", "PSNR dB"], rows))

  # -------------------------------------------------------------------- 10

  def section_contractive(self) -> str:
    names = [n for n in ("vanilla_k64", *CAE_RUNS) if n in self.runs]
    key = jax.random.key(2011)
    rows, numbers = [], {}
    for name in names:
      run, result = self.runs[name], self.results[name]
      frobenius = run.jacobian_frobenius_sq(self.test)
      moved = [analysis.code_sensitivity(run, self.test, sigma, jax.random.fold_in(key, i))
               for i, sigma in enumerate(self.plan.cae_sigmas)]
      numbers[name] = {"losses": run.config.losses, "corruption": run.config.corruption.to_dict(),
                       "code_activation": run.config.model.code_activation,
                       "epochs": result["epochs"], "test_mse": result["test"]["mse"],
                       "jacobian_frobenius_sq_mean": float(np.mean(frobenius)),
                       "jacobian_frobenius_sq_median": float(np.median(frobenius)),
                       "noise": moved}
      training = {"vanilla_k64": "plain, relu code (section 2's k = 64)",
                  "cae_plain": "plain", "cae_denoising":
                  f"denoising (gaussian {run.config.corruption.level:g})",
                  "cae_contractive": f"contractive (`{run.config.losses}`)"}[name]
      rows.append([name, training, result["epochs"], result["test"]["mse"],
                   float(np.mean(frobenius)), float(np.sqrt(np.mean(frobenius))),
                   *[v for m in moved for v in (m["rms_gain"], m["displacement"],
                                                m["relative"])]])
    self.numbers["contractive"] = {"sigmas": list(self.plan.cae_sigmas), "models": numbers}
    trio = [n for n in CAE_RUNS if n in numbers]
    flattest = min(trio, key=lambda n: numbers[n]["jacobian_frobenius_sq_mean"])
    steadiest = min(trio, key=lambda n: numbers[n]["noise"][0]["relative"])
    sigma_cols = [c for sigma in self.plan.cae_sigmas
                  for c in (f"RMS gain σ={sigma:g}", f"‖Δcode‖ σ={sigma:g}",
                            f"relative σ={sigma:g}")]
    config = self.runs["cae_contractive"].config
    return (
        "## 10. Contractive vs plain vs denoising\n\n"
        f"Three 784-{config.model.code_size}-784 autoencoders with a "
        f"{config.model.code_activation} code (the network of "
        "`experiments/configs/contractive.py`), trained alike "
        f"({_epochs(self.results['cae_plain']['epochs'])}, batch "
        f"{config.batch_size}, Adam, cosine schedule) and differing only in what "
        "regularises the code: nothing (plain), gaussian input noise of factor "
        f"{self.runs['cae_denoising'].config.corruption.level:g} (the denoising config's "
        f"noise, clipped to [0, 1]), or the contractive penalty (`{config.losses}`). "
        "The article's vanilla 784-64-784 with a relu code (section 2) is shown for "
        f"reference. On the {len(self.test):,} test images: ‖J‖²_F = "
        "Σ(∂code_j/∂x_i)², the encoder Jacobian's squared Frobenius norm, exact by "
        "reverse-mode autodiff (`analysis.Run.jacobian_frobenius_sq`), averaged; then "
        "gaussian noise of standard deviation σ (pixels in [0, 1], not clipped) added "
        "to each test image (`analysis.code_sensitivity`): ‖Δcode‖ is the mean "
        "Euclidean distance the code moves, *relative* divides it by the mean distance "
        "between the codes of two different test images (so it is comparable across "
        "models whose codes have different scales: the fraction of the gap between "
        "two digits that the noise covers), and the RMS gain √E‖Δcode‖²/σ would equal "
        "√mean‖J‖²_F if the encoder were linear over the noise's range.\n\n"
        + _table(["run", "training", "epochs", "test MSE", "mean ‖J‖²_F", "√mean ‖J‖²_F",
                  *sigma_cols], rows)
        + f"\nOf the three alike-trained models, the smallest Jacobian is "
        f"{flattest}'s and the code that moves least under σ = "
        f"{self.plan.cae_sigmas[0]:g} noise (relative to the code spread) is "
        f"{steadiest}'s.\n")

  # -------------------------------------------------------------------- 11

  def section_frontier(self) -> str:
    rows = self.frontier
    widths = sorted({r["width"] for r in rows})
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
    plots._save(fig, self.out / "frontier.png")
    compared = []
    for r in rows:
      if r["model"] == "topk" and r["auxk"]:
        l1 = sparsity_frontier.l1_mse_at(
            r["l0"], [s for s in rows if s["model"] == "l1" and s["width"] == r["width"]])
        compared.append({"width": r["width"], "k": r["k"], "l0": r["l0"],
                         "topk_mse": r["test_mse"], "l1_mse_at_l0": l1,
                         "dead_fraction": r["dead_fraction"]})
    wins = [c for c in compared if c["l1_mse_at_l0"] is not None]
    below = sum(c["topk_mse"] <= c["l1_mse_at_l0"] for c in wins)
    self.numbers["frontier"] = {"epochs": self.plan.frontier_epochs, "runs": rows,
                                "topk_vs_l1": compared}
    widest = max(widths)
    noaux = [r for r in rows if r["model"] == "topk" and not r["auxk"]]
    dead_text = "; ".join(
        f"k = {r['k']}: {100 * r['dead_fraction']:.1f}% without AuxK, "
        + ", ".join(f"{100 * s['dead_fraction']:.1f}% with"
                    for s in rows if s["model"] == "topk" and s["auxk"]
                    and s["k"] == r["k"] and s["width"] == r["width"])
        for r in noaux)
    epochs = self.plan.frontier_epochs
    return (
        "## 11. TopK vs L1: the sparsity frontier, and dead latents\n\n"
        "`experiments/sparsity_frontier.py`'s runs for the k and λ below (its command's "
        "default sweep is wider), trained by this report (the runs live in "
        "`<runs_dir>/frontier`, their figures in its `frontier.json`): at each code width, "
        f"TopK autoencoders (`experiments/configs/topk.py`, AuxK weight "
        f"{sparsity_frontier.DEFAULT_AUXK_WEIGHT:g}) for k in "
        f"{', '.join(map(str, self.plan.frontier_ks))}, and relu autoencoders with "
        f"`mse=1, l1_activity=λ` for λ in {', '.join(self.plan.frontier_l1)}; all "
        f"{_epochs(epochs)}, batch 128, Adam at 1e-3 (cosine). L0 = active code units "
        "per test image; dead fraction = units that never fire over the whole training "
        "set; FVE = fraction of the test set's variance explained. The second table "
        "sets each TopK run against the L1 frontier at the same L0 (the L1 runs' MSE "
        "interpolated linearly in log L0; blank outside the λ sweep's range).\n\n"
        + sparsity_frontier.tables(rows) + "\n\n"
        + f"TopK's MSE is at or below the L1 frontier's in {below} of the {len(wins)} "
        f"comparisons inside the λ range. Dead latents at width {widest}: "
        + (dead_text or "—") + ".\n\n![TopK vs L1](frontier.png)\n")

  # -------------------------------------------------------------------- 12

  def section_vqvae(self) -> str:
    names = [n for n in self.results if n.startswith("vqvae_")]
    mnist = self._rate_panels.get("MNIST test", {})
    jpeg_scan = mnist.get("JPEG (scan only)", ([], []))
    jpeg_file = mnist.get("JPEG (whole file)", ([], []))
    points, rows, numbers = [], [], {}
    for name in names:
      run, result = self.runs[name], self.results[name]
      model_eval = result["model_eval"]
      psnr = analysis.psnr_db(reference=self.test, reconstruction=run.reconstruct(self.test))
      size = model_eval["bits_per_image"] / 8
      scan = _interpolate_log(size, *jpeg_scan)
      whole = _interpolate_log(size, *jpeg_file)
      grid = int(round(model_eval["positions"] ** 0.5))
      numbers[name] = {"features": list(run.config.model.features),
                       "num_embeddings": model_eval["num_embeddings"],
                       "positions": model_eval["positions"],
                       "bits_per_image": model_eval["bits_per_image"], "bytes_per_image": size,
                       "psnr_db": psnr, "codes_used": model_eval["codes_used"],
                       "codebook_perplexity": model_eval["codebook_perplexity"],
                       "epochs": result["epochs"], "train_seconds": result["train_seconds"],
                       "jpeg_scan_psnr_at_bytes": scan, "jpeg_file_psnr_at_bytes": whole}
      verdict = ("JPEG's scan cannot be this small" if scan is None and jpeg_scan[0]
                 and size < min(jpeg_scan[0]) else "—" if scan is None
                 else "above" if psnr > scan else "below")
      rows.append([name, f"{grid}×{grid}", model_eval["num_embeddings"],
                   f"{model_eval['bits_per_image']:.0f}", size, psnr,
                   model_eval["codes_used"], "—" if scan is None else scan,
                   "—" if whole is None else whole, verdict])
      points.append((size, psnr))
    panel = dict(mnist)
    if points:
      points.sort()
      panel["VQ-VAE (positions × log2 K bits)"] = ([p[0] for p in points],
                                                  [p[1] for p in points])
    plots.rate_distortion({"MNIST test": panel}, self.out / "vqvae_rate.png")
    self.numbers["vqvae"] = numbers
    above = [n for n in names if numbers[n]["jpeg_scan_psnr_at_bytes"] is not None
             and numbers[n]["psnr_db"] > numbers[n]["jpeg_scan_psnr_at_bytes"]]
    comparable = [n for n in names if numbers[n]["jpeg_scan_psnr_at_bytes"] is not None]
    epochs = {self.results[n]["epochs"] for n in names}
    return (
        "## 12. VQ-VAE: bits per image against PSNR\n\n"
        "VQ-VAEs (`experiments/configs/vqvae.py`: EMA codebook, commitment 0.25) with "
        "smaller encoders than the config's (features as named, embedding dimension 16) "
        f"trained {', '.join(_epochs(e) for e in sorted(epochs))} each, so that the "
        "report can afford several. An image's code is its grid of codebook indices, "
        "positions × log2 K bits with no entropy coding (the decoder and codebook are "
        "shared side information, as for the autoencoder codes of section 7). PSNR on "
        f"the {len(self.test):,} test images, beside section 7's JPEG and quantized-code "
        "points; the JPEG columns give JPEG's PSNR at the VQ-VAE's byte count, "
        "interpolated linearly in log bytes between qualities.\n\n"
        + _table(["run", "grid", "K", "bits", "bytes", "PSNR dB", "codes used",
                  "JPEG scan PSNR at those bytes", "JPEG file PSNR at those bytes",
                  "VQ-VAE vs JPEG scan"], rows)
        + f"\nAt equal bytes, {len(above)} of the {len(comparable)} VQ-VAE points inside "
        "JPEG's range lie above JPEG's entropy-coded scan"
        + (f" ({', '.join(above)})" if above else "") + "; "
        + (f"{sum(numbers[n]['bytes_per_image'] < min(jpeg_file[0]) for n in names)} of "
           f"{len(names)} are smaller than JPEG's smallest whole file "
           f"({min(jpeg_file[0]):.0f} bytes, headers and tables counted).\n\n"
           if jpeg_file[0] else "\n\n")
        + "![VQ-VAE rate distortion](vqvae_rate.png)\n")

  # -------------------------------------------------------------------- 13

  def section_vae(self) -> str:
    anchors = {"vae": BURDA_VAE_NLL, "iwae": BURDA_IWAE_NLL}
    rows, numbers, curves, pictures, missing, stopped = [], {}, {}, [], [], []
    for name, config_file in LONG_RUNS.items():
      workdir = self.runs_dir / name
      results_path = workdir / "results.json"
      launch = (f"python -m experiments.main --config {config_file} --workdir "
                f"{self.runs_dir / name} --config.data_dir=path/to/mnist")
      evaluated = workdir / "evaluate_run.json"  # a run stopped before its end
      if results_path.exists():
        result = json.loads(results_path.read_text())
      elif evaluated.exists():
        result = json.loads(evaluated.read_text())
        config = json.loads((workdir / "config.json").read_text())
        stopped.append((name, result["epoch"], config["num_epochs"], evaluated.name))
      else:
        missing.append((name, launch))
        numbers[name] = {"present": False, "launch": launch}
        continue
      model_eval = result.get("model_eval", {})
      nll, elbo = model_eval.get("nll"), model_eval.get("elbo")
      records = _metrics(workdir) if (workdir / "metrics.jsonl").exists() else []
      if records:
        curves[name] = records
      if (workdir / "prior_samples.png").exists():
        target = self.out / f"{name}_prior_samples.png"
        target.write_bytes((workdir / "prior_samples.png").read_bytes())
        pictures.append((name, target.name))
      epochs = result.get("epochs", result.get("epoch"))  # evaluate_run.json: "epoch"
      numbers[name] = {"present": True, "launch": launch, "epochs": epochs,
                       "train_seconds": result.get("train_seconds"),
                       "backend": result.get("backend"), "nll": nll, "elbo": elbo,
                       "burda_nll": anchors[name]}
      where = result.get("backend", "?")
      if len(result.get("segments", [])) > 1:
        where += (f" (last of {len(result['segments'])} segments: resumed from epoch "
                  f"{result['segments'][-1]['first_epoch']})")
      rows.append([name, epochs, where,
                   "—" if nll is None else nll, "—" if elbo is None else elbo,
                   anchors[name], "—" if nll is None else nll - anchors[name]])
    self.numbers["vae"] = numbers
    text = ("## 13. VAE and IWAE\n\n"
            "Burda et al.'s one-stochastic-layer model (784-200-200-50 tanh, Gaussian "
            "encoder, Bernoulli decoder, dynamically binarized MNIST; "
            "`experiments/configs/vae.py`) takes hundreds of epochs, too long to train "
            "inside this report on a CPU: the report reads the runs `vae` and `iwae` "
            "(k = 50) from its runs folder when they are there. Test NLL is importance "
            "sampled (results.json's `model_eval`, 5,000 samples per image), ELBO is "
            f"the one-sample bound; anchors: Burda et al. 2016, table 1, {BURDA_VAE_NLL} "
            f"nats (VAE) and {BURDA_IWAE_NLL} (IWAE, k = 50).\n\n")
    if rows:
      text += _table(["run", "epochs", "trained on", "test NLL (nats)", "test ELBO",
                      "Burda et al.", "NLL − Burda"], rows)
    if curves:
      plots.training_curves({"VAE / IWAE: test and train loss (nats)": curves},
                            self.out / "vae_curves.png")
      text += "\n![VAE training curves](vae_curves.png)\n"
    for name, picture in pictures:
      text += f"\nSamples from the prior, {name}:\n\n![{name} prior samples]({picture})\n"
    for name, epoch, planned, file in stopped:
      text += (f"\n`{name}` was stopped after {epoch} of its {planned} epochs; its figures "
               f"are its newest checkpoint's, from `{file}` (`python -m "
               f"experiments.evaluate_run --workdir {self.runs_dir / name} "
               f"--data_dir=path/to/mnist --json={self.runs_dir / name / file}`).\n")
    for name, launch in missing:
      text += (f"\n`{name}`: no run in `{self.runs_dir / name}` when this report was "
               f"written. Train it with\n\n    {launch}\n\nand rerun this report's "
               "command (every other run is reused, not retrained).\n")
    return text


def _epochs(n: int) -> str:
  return f"{n} epoch" + ("" if n == 1 else "s")


def _interpolate_log(size: float, sizes: list[float], values: list[float]) -> float | None:
  """``values`` at ``size``, linear in log size between the two points around it;
  None outside their range."""
  points = sorted(zip(sizes, values))
  for (a, va), (b, vb) in zip(points, points[1:]):
    if a <= size <= b:
      t = 0.0 if b == a else (np.log(size) - np.log(a)) / (np.log(b) - np.log(a))
      return float(va + t * (vb - va))
  return None


def _metrics(workdir: pathlib.Path) -> list[dict]:
  path = workdir / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _one_per_digit(labels: np.ndarray) -> np.ndarray:
  return np.array([np.flatnonzero(labels == d)[0] for d in np.unique(labels)[:10]])


# ------------------------------------------------------------------------- main


def make_report(workdir: str | pathlib.Path, runs_dir: str | pathlib.Path | None = None,
                data_dir: str = "", quick: bool = False, command: str = "") -> dict:
  """Trains or reuses every run, measures, writes REPORT.md, report.json and figures."""
  out = pathlib.Path(workdir)
  runs_dir = pathlib.Path(runs_dir) if runs_dir else out / "runs"
  plan = QUICK if quick else FULL
  configs = run_configs(plan, data_dir)
  for config in [*configs.values(), *(c for _, _, c in frontier_configs(plan, data_dir))]:
    engine.validate_config(config)  # every user error before any compute
  dataset = data_lib.load(next(iter(configs.values())))
  out.mkdir(parents=True, exist_ok=True)
  started = time.perf_counter()
  results = {}
  for name, config in configs.items():
    logging.info("Run %s (%d epochs) in %s", name, config.num_epochs, runs_dir / name)
    results[name] = train.train_and_evaluate(config, str(runs_dir / name))
  frontier = sparsity_frontier.frontier_rows(frontier_configs(plan, data_dir),
                                             runs_dir / "frontier", dataset, verbose=False)
  trained = time.perf_counter() - started
  study = Study(plan, dataset, runs_dir, results, out, frontier)
  sections = []
  for section in (study.section_pca_and_sweep, study.section_features, study.section_maps,
                  study.section_denoising, study.section_sparsity, study.section_compression,
                  study.section_deep, study.section_curves, study.section_contractive,
                  study.section_frontier, study.section_vqvae, study.section_vae):
    begun = time.perf_counter()
    sections.append(section())
    logging.info("%s: %.1f s", section.__name__, time.perf_counter() - begun)
  measured = time.perf_counter() - started - trained
  record = dataset.record()
  header = (
      "# The article's claims, measured\n\n"
      "Every number and figure here was written by this one command, run from the "
      "repository root:\n\n"
      f"    {command}\n\n"
      f"Data: {record['name']} ({record['source']}), {record['n_train']:,} training and "
      f"{record['n_test']:,} test images"
      + (f" (measured on the first {plan.test_images:,})" if plan.test_images else "")
      + f". {len(results)} runs (and {len(frontier)} of the TopK/L1 frontier), "
      f"{(sum(r['train_seconds'] for r in results.values()) + sum(r['train_seconds'] for r in frontier)) / 60:.1f} min of training in "
      f"total on {jax.default_backend()}; this call spent {trained / 60:.1f} min training "
      f"or reloading runs and {measured / 60:.1f} min measuring. Every number is also in "
      "`report.json`.\n\n")
  (out / "REPORT.md").write_text(header + "\n".join(sections))
  numbers = {"command": command, "dataset": record, "plan": dataclasses.asdict(plan),
             **study.numbers,
             "runs": {name: {k: r[k] for k in ("epochs", "train_seconds", "test")}
                      for name, r in results.items()}}
  (out / "report.json").write_text(json.dumps(numbers, indent=2, default=float) + "\n")
  logging.info("Wrote %s", out / "REPORT.md")
  return numbers


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  for handler in (logging.get_absl_handler(), *pylogging.getLogger().handlers):
    handler.addFilter(lambda r: r.levelno >= pylogging.WARNING or "orbax" not in r.pathname)
  command = " ".join(["python -m experiments.report", *map(shlex.quote, sys.argv[1:])])
  try:
    FLAGS = flags.FLAGS
    make_report(FLAGS.workdir, FLAGS.runs_dir, FLAGS.data_dir, FLAGS.quick, command)
  except (FileNotFoundError, *train.USER_ERRORS) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
