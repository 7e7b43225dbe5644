"""Section 10, contractive against plain against denoising: the encoder Jacobian of
three alike-trained MLPs (and the vanilla k = 64 one), and how far noise moves codes."""

from __future__ import annotations

import jax
import numpy as np

from aejax import analysis
from experiments.report.context import Context
from experiments.report.plan import CAE_RUNS
from experiments.report.results import Contractive


def contractive(ctx: Context) -> Contractive:
  """Per model: ‖J‖²_F over the test set and ``analysis.code_sensitivity`` at each σ;
  ``flattest`` and ``steadiest``: of the three CAE runs, the smallest mean ‖J‖²_F and
  the smallest relative code motion at the first σ."""
  names = [n for n in ("vanilla_k64", *CAE_RUNS) if n in ctx.runs]
  key = jax.random.key(2011)
  rows, numbers = [], {}
  for name in names:
    run, result = ctx.runs[name], ctx.results[name]
    frobenius = run.jacobian_frobenius_sq(ctx.test)
    moved = [analysis.code_sensitivity(run, ctx.test, sigma, jax.random.fold_in(key, i))
             for i, sigma in enumerate(ctx.plan.cae_sigmas)]
    numbers[name] = {"losses": run.config.losses, "corruption": run.config.corruption.to_dict(),
                     "code_activation": run.config.model.code_activation,
                     "epochs": result["epochs"], "test_mse": result["test"]["mse"],
                     "jacobian_frobenius_sq_mean": float(np.mean(frobenius)),
                     "jacobian_frobenius_sq_median": float(np.median(frobenius)),
                     "noise": moved}
    rows.append([name, result["epochs"], result["test"]["mse"],
                 float(np.mean(frobenius)), float(np.sqrt(np.mean(frobenius))),
                 *[v for m in moved for v in (m["rms_gain"], m["displacement"],
                                              m["relative"])]])
  trio = [n for n in CAE_RUNS if n in numbers]
  config = ctx.runs["cae_contractive"].config
  return Contractive(
      numbers={"contractive": {"sigmas": list(ctx.plan.cae_sigmas), "models": numbers}},
      rows=rows, trainings={n: (m["losses"], m["corruption"].get("level"))
                            for n, m in numbers.items()},
      sigmas=ctx.plan.cae_sigmas,
      flattest=min(trio, key=lambda n: numbers[n]["jacobian_frobenius_sq_mean"]),
      steadiest=min(trio, key=lambda n: numbers[n]["noise"][0]["relative"]),
      code_size=config.model.code_size, code_activation=config.model.code_activation,
      batch_size=config.batch_size, losses=config.losses,
      noise_level=ctx.runs["cae_denoising"].config.corruption.level,
      epochs=ctx.results["cae_plain"]["epochs"], test_images=len(ctx.test))
