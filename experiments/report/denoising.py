"""Section 5, denoising: PSNR and SSIM of corrupted test images and of two models'
outputs on them, for each corruption and noise level."""

from __future__ import annotations

import jax

from aejax import analysis, plots
from experiments.report.context import Context, one_per_digit
from experiments.report.plan import CORRUPTIONS
from experiments.report.results import Denoising

MODELS = ("denoising", "conv")


def denoising(ctx: Context) -> Denoising:
  """Writes denoising.png (scores against level) and denoising_grid.png (one image
  per digit: clean, then each corruption at the middle level and both outputs)."""
  key = jax.random.key(2006)
  scores: dict = {}
  clean = {m: ctx.runs[m].reconstruct(ctx.test) for m in MODELS}
  rows = [["none (clean input)", 0, "∞",
           *[analysis.psnr_db(reference=ctx.test, reconstruction=clean[m]) for m in MODELS], 1.0,
           *[analysis.ssim(reference=ctx.test, reconstruction=clean[m]) for m in MODELS]]]
  shown = one_per_digit(ctx.test_labels)
  grid = [("clean", analysis.to_float(ctx.test_u8[shown]))]
  for c, corruption in enumerate(CORRUPTIONS):
    series = {"noisy input": {"psnr_db": [], "ssim": []},
              **{f"{m} model output": {"psnr_db": [], "ssim": []} for m in MODELS}}
    for l, level in enumerate(ctx.plan.noise_levels):
      noisy = analysis.corrupt(ctx.test, corruption, level,
                               jax.random.fold_in(jax.random.fold_in(key, c), l))
      outputs = {"noisy input": noisy,
                 **{f"{m} model output": ctx.runs[m].reconstruct(noisy) for m in MODELS}}
      row_psnr, row_ssim = [], []
      for name, images in outputs.items():
        psnr = analysis.psnr_db(reference=ctx.test, reconstruction=images)
        similarity = analysis.ssim(reference=ctx.test, reconstruction=images)
        series[name]["psnr_db"].append(psnr), series[name]["ssim"].append(similarity)
        row_psnr.append(psnr), row_ssim.append(similarity)
      rows.append([corruption, level, *row_psnr, *row_ssim])
      if l == len(ctx.plan.noise_levels) // 2:
        grid += [(f"{corruption} {level:g}", noisy[shown]),
                 *[(f"{m} model", outputs[f"{m} model output"][shown]) for m in MODELS]]
    scores[corruption] = series
  plots.denoising_curves(list(ctx.plan.noise_levels), scores, ctx.out / "denoising.png")
  plots.reconstruction_grid(grid, ctx.out / "denoising_grid.png")
  return Denoising(
      numbers={"denoising": {"levels": list(ctx.plan.noise_levels), "scores": scores}},
      rows=rows, noise_level=ctx.results["denoising"]["corruption"]["level"],
      denoising_epochs=ctx.results["denoising"]["epochs"],
      conv_epochs=ctx.results["conv"]["epochs"])
