"""The one place that writes the report: each section's results (the dicts the
section modules return) as markdown, and every number as report.json."""

from __future__ import annotations

import dataclasses
import json
import pathlib

from experiments import sparsity_frontier
from experiments.report.plan import (BURDA_IWAE_NLL, BURDA_VAE_NLL, HS_DEEP_SSE, HS_PCA30_SSE,
                                     Plan)


@dataclasses.dataclass(frozen=True)
class Summary:
  """What the report's opening paragraph says about the call that made it."""
  command: str
  dataset: dict  # data_lib.Dataset.record()
  test_images: int | None  # Plan.test_images
  runs: int
  frontier_runs: int
  train_seconds: float  # every run's training, frontier included
  backend: str
  trained: float  # seconds this call spent training or reloading runs
  measured: float  # seconds it spent measuring


def write(out: pathlib.Path, summary: Summary, plan: Plan, done: dict[str, dict],
          results: dict[str, dict]) -> dict:
  """Writes REPORT.md and report.json into ``out``; returns report.json's content.
  ``done``: each section's results by its key in SECTIONS; ``results``: each run's."""
  (out / "REPORT.md").write_text(markdown(summary, done))
  numbers = report_json(summary, plan, done, results)
  (out / "report.json").write_text(json.dumps(numbers, indent=2, default=float) + "\n")
  return numbers


def report_json(summary: Summary, plan: Plan, done: dict[str, dict],
                results: dict[str, dict]) -> dict:
  sections = {key: value for name in SECTIONS for key, value in done[name]["numbers"].items()}
  return {"command": summary.command, "dataset": summary.dataset,
          "plan": dataclasses.asdict(plan), **sections,
          "runs": {name: {k: r[k] for k in ("epochs", "train_seconds", "test")}
                   for name, r in results.items()}}


def markdown(summary: Summary, done: dict[str, dict]) -> str:
  return header(summary) + "\n".join(text(done[name]) for name, text in SECTIONS.items())


def codes_markdown(command: str, dataset: dict, done: dict[str, dict]) -> str:
  """Sections 1 to 4 alone, of runs on any data (``study.codes_report``)."""
  shape = dataset["image_shape"]
  what = (f"{shape[0]} features" if len(shape) == 1
          else "×".join(map(str, shape)) + " images")
  return ("# PCA, probes and 2-D maps of the codes\n\n"
          + (f"Written by this command, run from the repository root:\n\n    {command}\n\n"
             if command else "")
          + f"Data: {dataset['name']} ({dataset['source']}), {dataset['n_train']:,} training "
          f"and {dataset['n_test']:,} test examples of {what}.\n\n"
          + "\n".join(SECTIONS[name](done[name]) for name in ("sweep", "features", "maps")))


def header(s: Summary) -> str:
  record = s.dataset
  return (
      "# The article's claims, measured\n\n"
      "Every number and figure here was written by this one command, run from the "
      "repository root:\n\n"
      f"    {s.command}\n\n"
      f"Data: {record['name']} ({record['source']}), {record['n_train']:,} training and "
      f"{record['n_test']:,} test images"
      + (f" (measured on the first {s.test_images:,})" if s.test_images else "")
      + f". {s.runs} runs (and {s.frontier_runs} of the TopK/L1 frontier), "
      f"{s.train_seconds / 60:.1f} min of training in "
      f"total on {s.backend}; this call spent {s.trained / 60:.1f} min training "
      f"or reloading runs and {s.measured / 60:.1f} min measuring. Every number is also in "
      "`report.json`.\n\n")


def table(header: list[str], rows: list[list]) -> str:
  def cell(v):
    if isinstance(v, float):
      return "∞" if v == float("inf") else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def epochs(n: int) -> str:
  return f"{n} epoch" + ("" if n == 1 else "s")


def _or_dash(v):
  return "—" if v is None else v


# ---------------------------------------------------------------------- sections


def sweep(r: dict) -> str:
  pca30 = r["numbers"]["pca30"]
  d, unit = r["dimensions"], r["unit"]
  if "hinton_salakhutdinov" in pca30:  # MNIST
    off = pca30["relative_difference"]
    anchor = (f"; Hinton & Salakhutdinov (2006) report {HS_PCA30_SSE}: "
              f"{100 * off:.1f}% apart ({'within' if off <= 0.05 else 'NOT within'} 5%)")
  else:
    anchor = (f" of {r['data']}; Hinton & Salakhutdinov's {HS_PCA30_SSE} is MNIST's, "
              "so there is no published figure to set it against")
  values = "in [0, 1]" if r["bounded"] else "as the runs trained on them"
  return (
      "## 1. PCA at equal code size, and 2. the code-size sweep\n\n"
      f"PCA with {pca30['components']} components (fit on the "
      f"{r['train_images']:,} training examples) gives "
      f"**{pca30['sse_per_image']:.2f}** squared error per example on the "
      f"{r['test_images']:,} test examples{anchor}.\n\n"
      f"Each autoencoder is the article's vanilla model {d}-k-{d} (relu code, "
      f"{'sigmoid' if r['bounded'] else 'linear'} output, MSE, Adam) trained "
      f"{epochs(r['epochs'])}; PCA keeps min(k, {d}) components, so "
      f"its error is 0 from k = {d} on. SSE = squared error summed over the {d} {unit}s "
      f"({values}), averaged over test examples; MSE = SSE / {d}. Sparsity columns are "
      "the autoencoder's test codes: fraction of units exactly 0 per example, active "
      "units per example (L0), units never active on the whole test set.\n\n"
      + table(["k", "PCA comps", "PCA SSE/img", "AE SSE/img", "PCA MSE", "AE MSE",
               "lower error", "AE fraction 0", "AE L0", "AE never active"], r["rows"])
      + "\n![error vs code size](error_vs_code_size.png)\n")


def features(r: dict) -> str:
  if r.get("skipped"):
    return f"## 3. Codes as features\n\n{r['skipped']}\n"
  return (
      "## 3. Codes as features\n\n"
      f"Test accuracy of a logistic-regression probe (standardised features, lbfgs, "
      f"at most 300 iterations) and of 5-nearest-neighbours (Euclidean) fit on the "
      f"codes of the first {r['probe_train']:,} training examples, against PCA codes "
      f"with as many components (min(k, {r['dimensions']})) and against the raw "
      "data.\n\n"
      + table(["model", "code size", "AE logistic", "AE 5-NN", "PCA logistic",
               "PCA 5-NN"], r["rows"]))


def maps(r: dict) -> str:
  if r.get("skipped"):
    return f"## 4. 2-D maps\n\n{r['skipped']}\n"
  numbers, d = r["numbers"]["maps_2d"], r["dimensions"]
  knn = numbers["knn_accuracy"]
  fmt = lambda v: "—" if v is None else f"{v:.3f}"
  return (
      "## 4. 2-D maps\n\n"
      "Test codes coloured by digit (first 5,000 test images). 5-NN accuracy on the "
      f"2-D codes: PCA {fmt(knn['pca_2'])}, vanilla {d}-2-{d} {fmt(knn['vanilla_k2'])}, "
      f"{d}-512-128-2 {fmt(knn['map2d'])} (squared error per image "
      f"{numbers['map2d_sse_per_image']:.2f}, {epochs(r['map2d_epochs'])}).\n\n"
      "![2-D codes](code_maps_2d.png)\n")


def denoising(r: dict) -> str:
  return (
      "## 5. Denoising\n\n"
      "PSNR (of the mean squared error over the test set) and mean SSIM against the "
      "clean test image, of the corrupted input and of each model's output on it. "
      f"The denoising model is the article's conv autoencoder trained on gaussian "
      f"noise of factor {r['noise_level']:g} ({epochs(r['denoising_epochs'])}); "
      f"the conv model is the same network trained on clean images "
      f"({epochs(r['conv_epochs'])}), as a reference. The noise level is "
      "the gaussian noise factor, or the fraction of pixels hit for masking and "
      "salt-and-pepper.\n\n"
      + table(["corruption", "level", "PSNR noisy", "PSNR denoising", "PSNR conv",
               "SSIM noisy", "SSIM denoising", "SSIM conv"], r["rows"])
      + "\n![denoising curves](denoising.png)\n\n"
      "Rows: clean; then for each corruption at the middle level, the corrupted input "
      "and the two models' outputs.\n\n![denoising examples](denoising_grid.png)\n")


def sparsity(r: dict) -> str:
  return (
      "## 6. Sparsity\n\n"
      f"The sparse model of `experiments/configs/sparse.py`, 784-32-784 with a relu "
      f"code, trained {epochs(r['epochs'])} on its reconstruction term "
      f"plus λ·Σ|code| (losses `{r['losses']}` at the largest λ; "
      "λ = 0 is the same network without the penalty). On the test set: mean |code|, "
      "fraction of "
      "code units exactly 0 per example, active units per example (L0), units never "
      "active.\n\n"
      + table(["λ", "SSE/img", "mean activation", "fraction 0", "L0 (of 32)",
               "never active"], r["rows"]))


def compression(r: dict) -> str:
  return (
      "## 7. Compression against JPEG\n\n"
      "Bytes per image against PSNR on the test images, on MNIST itself and on two "
      "data sets no model was trained on (the same digits inverted, 255 − x; and "
      "moved 4 pixels right and down). JPEG: Pillow's baseline encoder at each "
      "quality; *file bytes* count the whole file it writes (headers, quantisation and "
      "Huffman tables included), *scan bytes* only the entropy-coded scan, as if the "
      "tables were shared by all images. Autoencoder: its code, each unit quantized "
      "uniformly to 8 or 4 bits between its minimum and maximum over the first "
      f"{r['probe_train']:,} training images (values outside are clipped), "
      "stored as k × bits / 8 bytes with no entropy coding; the decoder and the "
      "2 × k range values are shared side information, like JPEG's standard tables, "
      "and not counted.\n\n"
      + table(["data", "method", "file bytes", "scan bytes", "PSNR dB"], r["rows"])
      + "\n![rate distortion](compression.png)\n")


def deep(r: dict) -> str:
  numbers = r["numbers"]["deep"]
  sse, reached = numbers["sse_per_image"], numbers["at_or_below_3_00"]
  # Four decimals below: a figure this close to 3.00 must not round onto it.
  return (
      "## 8. The deep autoencoder of Hinton & Salakhutdinov\n\n"
      "784-1000-500-250-30 (relu hidden layers, linear 30-unit code) and its mirror, "
      "sigmoid output, MSE, Adam without RBM pretraining "
      f"(`experiments/configs/deep.py`): weight decay {r['weight_decay']:g}, "
      f"learning rate {r['learning_rate']:g}, {r['schedule']} schedule, "
      f"batch {r['batch_size']}, "
      f"{epochs(numbers['epochs'])} ({numbers['train_seconds'] / 60:.1f} min of training on "
      f"{r['backend']}).\n\n"
      + table(["model", "test SSE/img"], [
          ["PCA, 30 components (here)", r["pca30_sse"]],
          ["Hinton & Salakhutdinov 2006, PCA 30", f"{HS_PCA30_SSE:.2f}"],
          ["Hinton & Salakhutdinov 2006, deep AE (RBM pretraining)", f"{HS_DEEP_SSE:.2f}"],
          ["deep AE here (Adam, no pretraining)", f"{sse:.4f}"]])
      + f"\nVerdict: {sse:.4f} {'≤' if reached else '>'} {HS_DEEP_SSE:.2f}, so this recipe "
      + (f"reaches their figure ({-r['margin']:.4f} below it)" if reached
         else f"does not reach their figure ({r['margin']:.4f} above it)") + ".\n")


def curves(r: dict) -> str:
  return (
      "## 9. Training curves, and every run\n\n"
      "The training objective per epoch (solid: test, dashed: train; the denoising "
      "model's objective sees noisy inputs, the sparse models' includes the L1 term).\n\n"
      "![training curves](curves.png)\n\n"
      "Every run of this report, evaluated on clean test images (`results.json` of "
      "its workdir):\n\n"
      + table(["run", "epochs", "train s", "test MSE", "SSE/img", "PSNR dB"], r["rows"])
      + "".join(f"\n`{name}` is a sweep of {n} members: its row is member 0's ("
                + ", ".join(f"{k} = {v:g}" for k, v in overrides.items()) + ").\n"
                for name, overrides, n in r.get("sweeps", [])))


def _cae_training(name: str, model: dict) -> str:
  """How run ``name`` of section 10 was trained, from its numbers ``model``."""
  return {"vanilla_k64": "plain, relu code (section 2's k = 64)", "cae_plain": "plain",
          "cae_denoising": f"denoising (gaussian {model['corruption']['level']:g})",
          "cae_contractive": f"contractive (`{model['losses']}`)"}[name]


def contractive(r: dict) -> str:
  models = r["numbers"]["contractive"]["models"]
  rows = [[row[0], _cae_training(row[0], models[row[0]]), *row[1:]] for row in r["rows"]]
  sigma_cols = [c for sigma in r["sigmas"]
                for c in (f"RMS gain σ={sigma:g}", f"‖Δcode‖ σ={sigma:g}",
                          f"relative σ={sigma:g}")]
  return (
      "## 10. Contractive vs plain vs denoising\n\n"
      f"Three 784-{r['code_size']}-784 autoencoders with a "
      f"{r['code_activation']} code (the network of "
      "`experiments/configs/contractive.py`), trained alike "
      f"({epochs(r['epochs'])}, batch "
      f"{r['batch_size']}, Adam, cosine schedule) and differing only in what "
      "regularises the code: nothing (plain), gaussian input noise of factor "
      f"{r['noise_level']:g} (the denoising config's "
      f"noise, clipped to [0, 1]), or the contractive penalty (`{r['losses']}`). "
      "The article's vanilla 784-64-784 with a relu code (section 2) is shown for "
      f"reference. On the {r['test_images']:,} test images: ‖J‖²_F = "
      "Σ(∂code_j/∂x_i)², the encoder Jacobian's squared Frobenius norm, exact by "
      "reverse-mode autodiff (`analysis.Run.jacobian_frobenius_sq`), averaged; then "
      "gaussian noise of standard deviation σ (pixels in [0, 1], not clipped) added "
      "to each test image (`analysis.code_sensitivity`): ‖Δcode‖ is the mean "
      "Euclidean distance the code moves, *relative* divides it by the mean distance "
      "between the codes of two different test images (so it is comparable across "
      "models whose codes have different scales: the fraction of the gap between "
      "two digits that the noise covers), and the RMS gain √E‖Δcode‖²/σ would equal "
      "√mean‖J‖²_F if the encoder were linear over the noise's range.\n\n"
      + table(["run", "training", "epochs", "test MSE", "mean ‖J‖²_F", "√mean ‖J‖²_F",
               *sigma_cols], rows)
      + f"\nOf the three alike-trained models, the smallest Jacobian is "
      f"{r['flattest']}'s and the code that moves least under σ = "
      f"{r['sigmas'][0]:g} noise (relative to the code spread) is "
      f"{r['steadiest']}'s.\n")


def frontier(r: dict) -> str:
  numbers = r["numbers"]["frontier"]
  dead_text = "; ".join(
      f"k = {d['k']}: {100 * d['without_auxk']:.1f}% without AuxK, "
      + ", ".join(f"{100 * fraction:.1f}% with" for fraction in d["with_auxk"])
      for d in r["dead"])
  return (
      "## 11. TopK vs L1: the sparsity frontier, and dead latents\n\n"
      "`experiments/sparsity_frontier.py`'s runs for the k and λ below (its command's "
      "default sweep is wider), trained by this report (the runs live in "
      "`<runs_dir>/frontier`, their figures in its `frontier.json`): at each code width, "
      f"TopK autoencoders (`experiments/configs/topk.py`, AuxK weight "
      f"{r['auxk_weight']:g}) for k in "
      f"{', '.join(map(str, r['ks']))}, and relu autoencoders with "
      f"`mse=1, l1_activity=λ` for λ in {', '.join(r['l1_weights'])}; all "
      f"{epochs(numbers['epochs'])}, batch 128, Adam at 1e-3 (cosine). L0 = active code units "
      "per test image; dead fraction = units that never fire over the whole training "
      "set; FVE = fraction of the test set's variance explained. The second table "
      "sets each TopK run against the L1 frontier at the same L0 (the L1 runs' MSE "
      "interpolated linearly in log L0; blank outside the λ sweep's range).\n\n"
      + sparsity_frontier.tables(numbers["runs"]) + "\n\n"
      + f"TopK's MSE is at or below the L1 frontier's in {r['below']} of the "
      f"{r['comparisons']} comparisons inside the λ range. Dead latents at width "
      f"{r['widest']}: " + (dead_text or "—") + ".\n\n![TopK vs L1](frontier.png)\n")


_VQ_VERDICTS = {"too_small": "JPEG's scan cannot be this small", None: "—",
                "above": "above", "below": "below"}


def vqvae(r: dict) -> str:
  rows = [[v["name"], f"{v['grid']}×{v['grid']}", v["num_embeddings"], f"{v['bits']:.0f}",
           v["bytes"], v["psnr_db"], v["codes_used"], _or_dash(v["jpeg_scan_psnr"]),
           _or_dash(v["jpeg_file_psnr"]), _VQ_VERDICTS[v["verdict"]]] for v in r["rows"]]
  above = r["above"]
  return (
      "## 12. VQ-VAE: bits per image against PSNR\n\n"
      "VQ-VAEs (`experiments/configs/vqvae.py`: EMA codebook, commitment 0.25) with "
      "smaller encoders than the config's (features as named, embedding dimension 16) "
      f"trained {', '.join(epochs(e) for e in r['epochs'])} each, so that the "
      "report can afford several. An image's code is its grid of codebook indices, "
      "positions × log2 K bits with no entropy coding (the decoder and codebook are "
      "shared side information, as for the autoencoder codes of section 7). PSNR on "
      f"the {r['test_images']:,} test images, beside section 7's JPEG and quantized-code "
      "points; the JPEG columns give JPEG's PSNR at the VQ-VAE's byte count, "
      "interpolated linearly in log bytes between qualities.\n\n"
      + table(["run", "grid", "K", "bits", "bytes", "PSNR dB", "codes used",
               "JPEG scan PSNR at those bytes", "JPEG file PSNR at those bytes",
               "VQ-VAE vs JPEG scan"], rows)
      + f"\nAt equal bytes, {len(above)} of the {r['comparable']} VQ-VAE points inside "
      "JPEG's range lie above JPEG's entropy-coded scan"
      + (f" ({', '.join(above)})" if above else "") + "; "
      + (f"{r['below_smallest_jpeg_file']} of {r['runs']} are smaller than JPEG's smallest "
         f"whole file ({r['smallest_jpeg_file']:.0f} bytes, headers and tables counted).\n\n"
         if r["smallest_jpeg_file"] is not None else "\n\n")
      + "![VQ-VAE rate distortion](vqvae_rate.png)\n")


def vae(r: dict) -> str:
  text = ("## 13. VAE and IWAE\n\n"
          "Burda et al.'s one-stochastic-layer model (784-200-200-50 tanh, Gaussian "
          "encoder, Bernoulli decoder, dynamically binarized MNIST; "
          "`experiments/configs/vae.py`) takes hundreds of epochs, too long to train "
          "inside this report on a CPU: the report reads the runs `vae` and `iwae` "
          "(k = 50) from its runs folder when they are there. Test NLL is importance "
          "sampled (results.json's `model_eval`, 5,000 samples per image), ELBO is "
          f"the one-sample bound; anchors: Burda et al. 2016, table 1, {BURDA_VAE_NLL} "
          f"nats (VAE) and {BURDA_IWAE_NLL} (IWAE, k = 50).\n\n")
  if r["rows"]:
    text += table(["run", "epochs", "trained on", "test NLL (nats)", "test ELBO",
                   "Burda et al.", "NLL − Burda"], [
        [v["name"], v["epochs"], _trained_on(v), _or_dash(v["nll"]), _or_dash(v["elbo"]),
         v["burda_nll"], _or_dash(v["nll_minus_burda"])] for v in r["rows"]])
  if r["curves"]:
    text += "\n![VAE training curves](vae_curves.png)\n"
  for name, picture in r["pictures"]:
    text += f"\nSamples from the prior, {name}:\n\n![{name} prior samples]({picture})\n"
  for s in r["stopped"]:
    text += (f"\n`{s['name']}` was stopped after {s['epoch']} of its {s['planned']} epochs; "
             f"its figures are its newest checkpoint's, from `{s['file']}` (`python -m "
             f"experiments.evaluate_run --workdir {s['workdir']} "
             f"--data_dir=path/to/mnist --json={s['path']}`).\n")
  for m in r["missing"]:
    text += (f"\n`{m['name']}`: no run in `{m['workdir']}` when this report was "
             f"written. Train it with\n\n    {m['launch']}\n\nand rerun this report's "
             "command (every other run is reused, not retrained).\n")
  return text


# The payloads: JPEG's scan and WebP's VP8 chunk (the whole files are in report.json).
_AGAINST = ("JPEG scan", "WebP VP8")


def _bd_and_gap(s: dict) -> tuple[str, str]:
  """A BD-rate and the PSNR gaps at equal bytes, as table cells."""
  bd = "–" if s["bd_rate"] is None else f"{100 * s['bd_rate']:+.1f}%"
  gaps, sizes = s["psnr_gap_db"], s["shared_bytes"]
  if not gaps:
    return bd, "no shared rate"
  span = lambda v, f: f"{min(v):{f}}" if min(v) == max(v) else f"{min(v):{f}} to {max(v):{f}}"
  return bd, f"{span(gaps, '+.2f')} dB at {span(sizes, '.0f')} bytes"


def codecs(r: dict) -> str:
  text = ("## 14. A learned codec in real bytes\n\n"
          "The article's warning, that JPEG compresses images vastly better than an "
          "autoencoder, tested with autoencoders trained for the rate: Ballé et al.'s "
          "factorized prior (2017) and scale hyperprior (2018) "
          "(`experiments/configs/codec.py` and `codec.py:hyperprior`), the loss squared "
          "error + λ · bits, each prior's λ values trained as one sweep run. Every byte "
          "count is a real byte string per image (range-coded with the integer tables "
          "saved beside the checkpoint, decoded again and checked equal to the model's "
          "quantized reconstruction); *estimated* is the model's own rate. JPEG and WebP "
          "count their whole file and their payload alone (JPEG's scan, WebP's VP8 "
          "chunk, as if headers and tables were shared), PNG is lossless. Measured on "
          f"the first {r['test_images']:,} test images, the same inverted and shifted, "
          "and grey 28×28 tiles of scikit-image's bundled photographs "
          "(`experiments/compression.py`, which also runs this measurement on any "
          "codec runs).\n\n")
  if not r["series"]:
    return text + "No codec run was trained.\n"
  for name in r["series"]:
    run, points = r["runs"][name], r["members"][name]
    text += (f"`{name}`: {len(points)} λ, {epochs(run['epochs'])} each "
             f"({run['train_seconds'] / 60:.1f} min of training), on the MNIST test "
             "images:\n\n")
    text += table(["λ", "real bytes", "estimated bytes", "real − estimated", "PSNR dB",
                   "SSIM"], [[p["setting"].removeprefix("rate="), p["bytes"],
                              p["estimated_bytes"], p["overhead_bytes"], p["psnr_db"],
                              p["ssim"]] for p in points]) + "\n"
  rows = [[title, name, *(cell for against in _AGAINST for cell in _bd_and_gap(
      summary[name][against]))] for title, (_, summary) in r["datasets"].items()
          for name in r["series"]]
  overhead = [p["overhead_bytes"] for points in r["members"].values() for p in points]
  text += ("BD-rate is the mean difference in bytes at equal PSNR over the PSNR range "
           "both curves cover (negative: the codec needs fewer); the gap is the codec's "
           "PSNR minus the other's at the codec's byte counts within the other's range, "
           "interpolated in log bytes.\n\n"
           + table(["data", "codec", *(f"{h} {a}" for a in _AGAINST
                                        for h in ("BD-rate vs", "PSNR gap vs"))], rows)
           + "\n" + _codec_verdict(r)
           + f"\nEach byte string is the estimated rate plus {min(overhead):.2f}–"
           f"{max(overhead):.2f} bytes (the range coder's final word), flushes and the "
           "side information ẑ included.\n\n"
           "![codec rate distortion](codec_rate.png)\n\n"
           "![codec rate distortion, SSIM](codec_rate_ssim.png)\n")
  return text


def _codec_verdict(r: dict) -> str:
  """The article's sentence against the better curve, on the codec's own data and on
  the data sets it was not trained for."""
  def rank(name):  # the lowest BD-rate against JPEG's scan on MNIST, else the best gap
    scan = r["datasets"]["MNIST test"][1][name]["JPEG scan"]
    if scan["bd_rate"] is not None:
      return (0, scan["bd_rate"])
    return (1, -max(scan["psnr_gap_db"], default=-float("inf")))
  best = min(r["series"], key=rank)
  parts = []
  for title, (_, summary) in r["datasets"].items():
    scan, webp = summary[best]["JPEG scan"], summary[best]["WebP VP8"]
    if not scan["psnr_gap_db"]:
      parts.append(f"on {title} it shares no rate with JPEG's scan")
      continue
    above = scan["above_at_every_shared_rate"]
    below = max(scan["psnr_gap_db"]) < 0
    where = ("above JPEG's scan and WebP's VP8 chunk at every rate they share"
             if above and webp["above_at_every_shared_rate"] else
             "above JPEG's scan at every rate they share, not always above WebP's"
             if above else "below JPEG's scan at every rate they share" if below
             else "above JPEG's scan at some rates and below at others")
    parts.append(f"on {title} it is {where} ({_bd_and_gap(scan)[1]})")
  return (f"Verdict, for the better curve (`{best}`): " + "; ".join(parts) + ". "
          + " ".join(_sentence(title, summary[best]["JPEG scan"])
                     for title, (_, summary) in r["datasets"].items()) + "\n")


def _sentence(title: str, scan: dict) -> str:
  """Whether the article's sentence holds on one data set, against JPEG's scan."""
  points = sorted(zip(scan["shared_bytes"], scan["psnr_gap_db"]))
  if not points:
    return ""
  own = title == "MNIST test"
  if all(g > 0 for _, g in points):
    return (f"On {title} the sentence fails: the codec beats JPEG at every rate they share."
            if own else f"On {title}, not trained for, the codec still beats JPEG.")
  if all(g < 0 for _, g in points):
    return f"On {title}{'' if own else ', not trained for,'} the sentence holds."
  above = [b for b, g in points if g > 0]
  below = [b for b, g in points if g < 0]
  return (f"On {title} it depends on the rate: the codec is above JPEG at "
          f"{min(above):.0f}–{max(above):.0f} bytes and below it at "
          f"{min(below):.0f}–{max(below):.0f}.")


def seeds(r: dict) -> str:
  text = ("## 15. The headline figures over seeds\n\n"
          "The sections above train one seed per model. The configs' headline figures "
          "(docs/results/README.md's table) over five seeds: each config trained as "
          "one `--config.sweep=seed=0:5` run by `scripts/train_all.sh` (about 4 hours "
          "of a 2-core CPU for all ten, so outside this report), read from "
          f"`{r['seeds_dir']}`. Mean ± sample std (min–max) and the 95% t-interval of "
          "the mean; a target counts as met when the mean is at it and the interval "
          "does not cross it.\n\n")
  if r["rows"]:
    rows = []
    for row in r["rows"]:
      claim, s = row["claim"], row["stats"]
      f = ".2f" if claim.figure.endswith("_db") else ".3f" if "sse" in claim.figure else ".5f"
      low, high = s["ci95"]
      rows.append([f"`{claim.spec}`", claim.figure, s["n"], row["epochs"],
                   f"{s['mean']:{f}} ± {s['std']:{f}} ({s['min']:{f}}–{s['max']:{f}})",
                   f"{low:{f}}–{high:{f}}", _target(claim), _met(claim, row["met"], low, high)])
    text += table(["config", "figure", "seeds", "epochs", "mean ± std (min–max)",
                   "95% interval", "target", "met"], rows)
  if r["missing"]:
    many = len(r["missing"]) > 1
    text += (f"\n{'No' if not r['rows'] else 'No more'} sweep runs in `{r['seeds_dir']}` "
             f"for {', '.join(f'`{m}`' for m in r['missing'])}; "
             f"{'their figures' if many else 'its figure'} over seeds, from an earlier "
             f"machine, {'are' if many else 'is'} in docs/results/README.md. Train "
             f"{'them' if many else 'it'} with\n\n"
             f"    {r['command']}\n\nand rerun this report's command (every other run "
             "is reused, not retrained).\n")
  for workdir, why in r["unusable"].items():
    text += (f"\n`{workdir}` holds {why}: move it aside first, or the command above "
             "refuses to train there.\n")
  return text


def _target(claim) -> str:
  if claim.target is None:
    return "–"
  return f"{'≥' if claim.higher_is_better else '≤'} {claim.target:g} ({claim.source})"


def _met(claim, met: bool | None, low: float, high: float) -> str:
  if met is None:
    return "–"
  if met:
    return "yes"
  return "no: the interval holds it" if low <= claim.target <= high else "no"


def _trained_on(v: dict) -> str:
  """The backend, and for a run resumed across segments, from which epoch."""
  if v["segments"] <= 1:
    return v["backend"]
  return (v["backend"] + f" (last of {v['segments']} segments: resumed from epoch "
          f"{v['resumed_from']})")


# The report's sections in order: the key of each one's results, and its writer.
SECTIONS = {"sweep": sweep, "features": features, "maps": maps, "denoising": denoising,
            "sparsity": sparsity, "compression": compression, "deep": deep,
            "curves": curves, "contractive": contractive, "frontier": frontier,
            "vqvae": vqvae, "vae": vae, "codecs": codecs, "seeds": seeds}
