"""The article's claims, measured: trains (or reuses) every model the study needs,
measures each claim against its baseline and writes REPORT.md with its figures.

    python -m experiments.report --workdir docs --runs_dir runs/report \
        --data_dir path/to/mnist          # full MNIST (about 45 min on 2 CPU cores)
    python -m experiments.report --workdir report_quick --quick   # bundled sample, 1 epoch

Runs live in ``--runs_dir`` (default ``<workdir>/runs``), one workdir each; a run
that is already trained is resumed, i.e. only evaluated again, so a second call
re-measures without retraining. ``<workdir>`` receives REPORT.md, report.json (every
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
from experiments.configs import base, conv, deep, denoising, multilayer, sparse, vanilla



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
FIGURES = ("curves.png", "error_vs_code_size.png", "code_maps_2d.png", "denoising.png",
           "denoising_grid.png", "compression.png")


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


FULL = Plan(dataset="mnist", sweep_sizes=(2, 4, 8, 16, 32, 64, 128, 784, 1024),
            sparse_l1=(0.0, 1e-5, 1e-4, 1e-3), noise_levels=(0.1, 0.3, 0.5, 0.7, 0.9),
            jpeg_qualities=(5, 10, 20, 30, 50, 75, 90), compression_sizes=(8, 16, 32, 64),
            probe_train=10_000, num_epochs=None)
QUICK = Plan(dataset="mnist_sample", sweep_sizes=(2, 32), sparse_l1=(0.0, 1e-4),
             noise_levels=(0.3, 0.7), jpeg_qualities=(10, 90), compression_sizes=(32,),
             probe_train=1000, num_epochs=1, test_images=500)


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
  for config in configs.values():
    config.dataset = plan.dataset
    config.data_dir = data_dir if plan.dataset == "mnist" else ""
    if plan.num_epochs is not None:
      config.num_epochs = plan.num_epochs
      # A warm-up as long as the run would leave the cosine no steps to decay over.
      config.warmup_epochs = min(config.warmup_epochs, 0.2 * plan.num_epochs)
  return configs


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
               results: dict[str, dict], out: pathlib.Path):
    self.plan, self.dataset, self.out, self.results = plan, dataset, out, results
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
    self.numbers["deep"] = {"sse_per_image": sse, "hinton_salakhutdinov": HS_DEEP_SSE,
                            "epochs": result["epochs"], "train_seconds": result["train_seconds"],
                            "beats_3_00": sse < HS_DEEP_SSE}
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
            ["deep AE here (Adam, no pretraining)", sse]])
        + f"\nVerdict: {sse:.2f} {'<' if sse < HS_DEEP_SSE else '≥'} {HS_DEEP_SSE:.2f}, so "
        f"this recipe {'beats' if sse < HS_DEEP_SSE else 'does not beat'} their figure.\n")

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


def _epochs(n: int) -> str:
  return f"{n} epoch" + ("" if n == 1 else "s")


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
  for config in configs.values():  # every user error before any compute
    engine.validate_config(config)
  dataset = data_lib.load(next(iter(configs.values())))
  out.mkdir(parents=True, exist_ok=True)
  started = time.perf_counter()
  results = {}
  for name, config in configs.items():
    logging.info("Run %s (%d epochs) in %s", name, config.num_epochs, runs_dir / name)
    results[name] = train.train_and_evaluate(config, str(runs_dir / name))
  trained = time.perf_counter() - started
  study = Study(plan, dataset, runs_dir, results, out)
  sections = [study.section_pca_and_sweep(), study.section_features(), study.section_maps(),
              study.section_denoising(), study.section_sparsity(), study.section_compression(),
              study.section_deep(), study.section_curves()]
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
      + f". {len(results)} runs, "
      f"{sum(r['train_seconds'] for r in results.values()) / 60:.1f} min of training in "
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
