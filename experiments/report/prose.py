"""The report's prose, section by section: each function renders one section's typed
result (``results``) as markdown. Sections 7, 12 and 14, bytes against PSNR, are in
``prose_compression``; ``writer`` puts them all in order."""

from __future__ import annotations

from experiments import sparsity_frontier
from experiments.report.plan import (BURDA_IWAE_NLL, BURDA_VAE_NLL, HS_DEEP_SSE,
                                     HS_PCA30_SSE)
from experiments.report.results import (Contractive, Curves, Deep, Denoising, Features,
                                        Frontier, Maps, PcaSweep, Seeds, Sparsity, Vae)


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


def or_dash(v):
  return "—" if v is None else v


def sweep_section(r: PcaSweep) -> str:
  d, unit, off = r.dimensions, r.unit, r.pca30_off
  if off is not None:  # MNIST
    anchor = (f"; Hinton & Salakhutdinov (2006) report {HS_PCA30_SSE}: "
              f"{100 * off:.1f}% apart ({'within' if off <= 0.05 else 'NOT within'} 5%)")
  else:
    anchor = (f" of {r.data}; Hinton & Salakhutdinov's {HS_PCA30_SSE} is MNIST's, "
              "so there is no published figure to set it against")
  values = "in [0, 1]" if r.bounded else "as the runs trained on them"
  return (
      "## 1. PCA at equal code size, and 2. the code-size sweep\n\n"
      f"PCA with {r.pca30_components} components (fit on the "
      f"{r.train_images:,} training examples) gives "
      f"**{r.pca30_sse:.2f}** squared error per example on the "
      f"{r.test_images:,} test examples{anchor}.\n\n"
      f"Each autoencoder is the article's vanilla model {d}-k-{d} (relu code, "
      f"{'sigmoid' if r.bounded else 'linear'} output, MSE, Adam) trained "
      f"{epochs(r.epochs)}; PCA keeps min(k, {d}) components, so "
      f"its error is 0 from k = {d} on. SSE = squared error summed over the {d} {unit}s "
      f"({values}), averaged over test examples; MSE = SSE / {d}. Sparsity columns are "
      "the autoencoder's test codes: fraction of units exactly 0 per example, active "
      "units per example (L0), units never active on the whole test set.\n\n"
      + table(["k", "PCA comps", "PCA SSE/img", "AE SSE/img", "PCA MSE", "AE MSE",
               "lower error", "AE fraction 0", "AE L0", "AE never active"], r.rows)
      + "\n![error vs code size](error_vs_code_size.png)\n")


def features_section(r: Features) -> str:
  if r.skipped:
    return f"## 3. Codes as features\n\n{r.skipped}\n"
  return (
      "## 3. Codes as features\n\n"
      f"Test accuracy of a logistic-regression probe (standardised features, lbfgs, "
      f"at most 300 iterations) and of 5-nearest-neighbours (Euclidean) fit on the "
      f"codes of the first {r.probe_train:,} training examples, against PCA codes "
      f"with as many components (min(k, {r.dimensions})) and against the raw "
      "data.\n\n"
      + table(["model", "code size", "AE logistic", "AE 5-NN", "PCA logistic",
               "PCA 5-NN"], r.rows))


def maps_section(r: Maps) -> str:
  if r.skipped:
    return f"## 4. 2-D maps\n\n{r.skipped}\n"
  d, knn = r.dimensions, r.knn
  fmt = lambda v: "—" if v is None else f"{v:.3f}"
  return (
      "## 4. 2-D maps\n\n"
      "Test codes coloured by digit (first 5,000 test images). 5-NN accuracy on the "
      f"2-D codes: PCA {fmt(knn['pca_2'])}, vanilla {d}-2-{d} {fmt(knn['vanilla_k2'])}, "
      f"{d}-512-128-2 {fmt(knn['map2d'])} (squared error per image "
      f"{r.map2d_sse:.2f}, {epochs(r.map2d_epochs)}).\n\n"
      "![2-D codes](code_maps_2d.png)\n")


def denoising_section(r: Denoising) -> str:
  return (
      "## 5. Denoising\n\n"
      "PSNR (of the mean squared error over the test set) and mean SSIM against the "
      "clean test image, of the corrupted input and of each model's output on it. "
      f"The denoising model is the article's conv autoencoder trained on gaussian "
      f"noise of factor {r.noise_level:g} ({epochs(r.denoising_epochs)}); "
      f"the conv model is the same network trained on clean images "
      f"({epochs(r.conv_epochs)}), as a reference. The noise level is "
      "the gaussian noise factor, or the fraction of pixels hit for masking and "
      "salt-and-pepper.\n\n"
      + table(["corruption", "level", "PSNR noisy", "PSNR denoising", "PSNR conv",
               "SSIM noisy", "SSIM denoising", "SSIM conv"], r.rows)
      + "\n![denoising curves](denoising.png)\n\n"
      "Rows: clean; then for each corruption at the middle level, the corrupted input "
      "and the two models' outputs.\n\n![denoising examples](denoising_grid.png)\n")


def sparsity_section(r: Sparsity) -> str:
  return (
      "## 6. Sparsity\n\n"
      f"The sparse model of `experiments/configs/sparse.py`, 784-32-784 with a relu "
      f"code, trained {epochs(r.epochs)} on its reconstruction term "
      f"plus λ·Σ|code| (losses `{r.losses}` at the largest λ; "
      "λ = 0 is the same network without the penalty). On the test set: mean |code|, "
      "fraction of "
      "code units exactly 0 per example, active units per example (L0), units never "
      "active.\n\n"
      + table(["λ", "SSE/img", "mean activation", "fraction 0", "L0 (of 32)",
               "never active"], r.rows))


def deep_section(r: Deep) -> str:
  sse, reached = r.sse, r.reached
  # Four decimals below: a figure this close to 3.00 must not round onto it.
  return (
      "## 8. The deep autoencoder of Hinton & Salakhutdinov\n\n"
      "784-1000-500-250-30 (relu hidden layers, linear 30-unit code) and its mirror, "
      "sigmoid output, MSE, Adam without RBM pretraining "
      f"(`experiments/configs/deep.py`): weight decay {r.weight_decay:g}, "
      f"learning rate {r.learning_rate:g}, {r.schedule} schedule, "
      f"batch {r.batch_size}, "
      f"{epochs(r.epochs)} ({r.train_seconds / 60:.1f} min of training on "
      f"{r.backend}).\n\n"
      + table(["model", "test SSE/img"], [
          ["PCA, 30 components (here)", r.pca30_sse],
          ["Hinton & Salakhutdinov 2006, PCA 30", f"{HS_PCA30_SSE:.2f}"],
          ["Hinton & Salakhutdinov 2006, deep AE (RBM pretraining)", f"{HS_DEEP_SSE:.2f}"],
          ["deep AE here (Adam, no pretraining)", f"{sse:.4f}"]])
      + f"\nVerdict: {sse:.4f} {'≤' if reached else '>'} {HS_DEEP_SSE:.2f}, so this recipe "
      + (f"reaches their figure ({-r.margin:.4f} below it)" if reached
         else f"does not reach their figure ({r.margin:.4f} above it)") + ".\n")


def curves_section(r: Curves) -> str:
  return (
      "## 9. Training curves, and every run\n\n"
      "The training objective per epoch (solid: test, dashed: train; the denoising "
      "model's objective sees noisy inputs, the sparse models' includes the L1 term).\n\n"
      "![training curves](curves.png)\n\n"
      "Every run of this report, evaluated on clean test images (`results.json` of "
      "its workdir):\n\n"
      + table(["run", "epochs", "train s", "test MSE", "SSE/img", "PSNR dB"], r.rows)
      + "".join(f"\n`{name}` is a sweep of {n} members: its row is member 0's ("
                + ", ".join(f"{k} = {v:g}" for k, v in overrides.items()) + ").\n"
                for name, overrides, n in r.sweeps))


def _cae_training(name: str, losses: str, level: float | None) -> str:
  """How run ``name`` of section 10 was trained: its ``losses`` and noise ``level``."""
  if name == "cae_denoising":
    return f"denoising (gaussian {level:g})"
  return {"vanilla_k64": "plain, relu code (section 2's k = 64)", "cae_plain": "plain",
          "cae_contractive": f"contractive (`{losses}`)"}[name]


def contractive_section(r: Contractive) -> str:
  rows = [[row[0], _cae_training(row[0], *r.trainings[row[0]]), *row[1:]] for row in r.rows]
  sigma_cols = [c for sigma in r.sigmas
                for c in (f"RMS gain σ={sigma:g}", f"‖Δcode‖ σ={sigma:g}",
                          f"relative σ={sigma:g}")]
  return (
      "## 10. Contractive vs plain vs denoising\n\n"
      f"Three 784-{r.code_size}-784 autoencoders with a "
      f"{r.code_activation} code (the network of "
      "`experiments/configs/contractive.py`), trained alike "
      f"({epochs(r.epochs)}, batch "
      f"{r.batch_size}, Adam, cosine schedule) and differing only in what "
      "regularises the code: nothing (plain), gaussian input noise of factor "
      f"{r.noise_level:g} (the denoising config's "
      f"noise, clipped to [0, 1]), or the contractive penalty (`{r.losses}`). "
      "The article's vanilla 784-64-784 with a relu code (section 2) is shown for "
      f"reference. On the {r.test_images:,} test images: ‖J‖²_F = "
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
      f"{r.flattest}'s and the code that moves least under σ = "
      f"{r.sigmas[0]:g} noise (relative to the code spread) is "
      f"{r.steadiest}'s.\n")


def frontier_section(r: Frontier) -> str:
  dead_text = "; ".join(
      f"k = {d['k']}: {100 * d['without_auxk']:.1f}% without AuxK, "
      + ", ".join(f"{100 * fraction:.1f}% with" for fraction in d["with_auxk"])
      for d in r.dead)
  return (
      "## 11. TopK vs L1: the sparsity frontier, and dead latents\n\n"
      "`experiments/sparsity_frontier.py`'s runs for the k and λ below (its command's "
      "default sweep is wider), trained by this report (the runs live in "
      "`<runs_dir>/frontier`, their figures in its `frontier.json`): at each code width, "
      f"TopK autoencoders (`experiments/configs/topk.py`, AuxK weight "
      f"{r.auxk_weight:g}) for k in "
      f"{', '.join(map(str, r.ks))}, and relu autoencoders with "
      f"`mse=1, l1_activity=λ` for λ in {', '.join(r.l1_weights)}; all "
      f"{epochs(r.epochs)}, batch 128, Adam at 1e-3 (cosine). L0 = active code units "
      "per test image; dead fraction = units that never fire over the whole training "
      "set; FVE = fraction of the test set's variance explained. The second table "
      "sets each TopK run against the L1 frontier at the same L0 (the L1 runs' MSE "
      "interpolated linearly in log L0; blank outside the λ sweep's range).\n\n"
      + sparsity_frontier.tables(r.runs) + "\n\n"
      + f"TopK's MSE is at or below the L1 frontier's in {r.below} of the "
      f"{r.comparisons} comparisons inside the λ range. Dead latents at width "
      f"{r.widest}: " + (dead_text or "—") + ".\n\n![TopK vs L1](frontier.png)\n")


def vae_section(r: Vae) -> str:
  text = ("## 13. VAE and IWAE\n\n"
          "Burda et al.'s one-stochastic-layer model (784-200-200-50 tanh, Gaussian "
          "encoder, Bernoulli decoder, dynamically binarized MNIST; "
          "`experiments/configs/vae.py`) takes hundreds of epochs, too long to train "
          "inside this report on a CPU: the report reads the runs `vae` and `iwae` "
          "(k = 50) from its runs folder when they are there. Test NLL is importance "
          "sampled (results.json's `model_eval`, 5,000 samples per image), ELBO is "
          f"the one-sample bound; anchors: Burda et al. 2016, table 1, {BURDA_VAE_NLL} "
          f"nats (VAE) and {BURDA_IWAE_NLL} (IWAE, k = 50).\n\n")
  if r.rows:
    text += table(["run", "epochs", "trained on", "test NLL (nats)", "test ELBO",
                   "Burda et al.", "NLL − Burda"], [
        [v["name"], v["epochs"], _trained_on(v), or_dash(v["nll"]), or_dash(v["elbo"]),
         v["burda_nll"], or_dash(v["nll_minus_burda"])] for v in r.rows])
  if r.curves:
    text += "\n![VAE training curves](vae_curves.png)\n"
  for name, picture in r.pictures:
    text += f"\nSamples from the prior, {name}:\n\n![{name} prior samples]({picture})\n"
  for s in r.stopped:
    text += (f"\n`{s['name']}` was stopped after {s['epoch']} of its {s['planned']} epochs; "
             f"its figures are its newest checkpoint's, from `{s['file']}` (`python -m "
             f"experiments.evaluate_run --workdir {s['workdir']} "
             f"--data_dir=path/to/mnist --json={s['path']}`).\n")
  for m in r.missing:
    text += (f"\n`{m['name']}`: no run in `{m['workdir']}` when this report was "
             f"written. Train it with\n\n    {m['launch']}\n\nand rerun this report's "
             "command (every other run is reused, not retrained).\n")
  return text


# The payloads: JPEG's scan and WebP's VP8 chunk (the whole files are in report.json).
def seeds_section(r: Seeds) -> str:
  text = ("## 15. The headline figures over seeds\n\n"
          "The sections above train one seed per model. The configs' headline figures "
          "(docs/results/README.md's table) over five seeds: each config trained as "
          "one `--config.sweep=seed=0:5` run by `scripts/train_all.sh` (about 4 hours "
          "of a 2-core CPU for all ten, so outside this report), read from "
          f"`{r.seeds_dir}`. Mean ± sample std (min–max) and the 95% t-interval of "
          "the mean; a target counts as met when the mean is at it and the interval "
          "does not cross it.\n\n")
  if r.rows:
    rows = []
    for row in r.rows:
      claim, s = row.claim, row.stats
      f = ".2f" if claim.figure.endswith("_db") else ".3f" if "sse" in claim.figure else ".5f"
      low, high = s["ci95"]
      rows.append([f"`{claim.spec}`", claim.figure, s["n"], row.epochs,
                   f"{s['mean']:{f}} ± {s['std']:{f}} ({s['min']:{f}}–{s['max']:{f}})",
                   f"{low:{f}}–{high:{f}}", _target(claim), _met(claim, row.met, low, high)])
    text += table(["config", "figure", "seeds", "epochs", "mean ± std (min–max)",
                   "95% interval", "target", "met"], rows)
  if r.missing:
    many = len(r.missing) > 1
    text += (f"\n{'No' if not r.rows else 'No more'} sweep runs in `{r.seeds_dir}` "
             f"for {', '.join(f'`{m}`' for m in r.missing)}; "
             f"{'their figures' if many else 'its figure'} over seeds, from an earlier "
             f"machine, {'are' if many else 'is'} in docs/results/README.md. Train "
             f"{'them' if many else 'it'} with\n\n"
             f"    {r.command}\n\nand rerun this report's command (every other run "
             "is reused, not retrained).\n")
  for workdir, why in r.unusable.items():
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
