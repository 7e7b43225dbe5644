"""Prints a markdown table of the results.json files under one or more run folders.

    python -m experiments.results_table runs/vanilla runs/multilayer ...
    python -m experiments.results_table runs/*

One row per run: name, data, epochs, test MSE, SSE per image, PSNR, code activation,
denoising PSNRs where the run had a corruption, and train seconds.
"""

import json
import pathlib
import sys


def row(workdir: pathlib.Path) -> str:
  r = json.loads((workdir / "results.json").read_text())
  t, d = r["test"], r.get("denoising")
  denoise = f"{d['psnr_noisy_db']:.2f} → {d['psnr_denoised_db']:.2f}" if d else "–"
  return (f"| `{workdir.name}` | {r['name']} | {r['dataset']['name']} ({r['dataset']['n_train']:,}) "
          f"| {r['epochs']} | {t['mse']:.5f} | {t['sse_per_image']:.2f} | {t['psnr_db']:.2f} "
          f"| {t['code_mean_activation']:.3f} | {denoise} | {r['train_seconds']:.0f} |")


def main(argv: list[str]) -> None:
  folders = [pathlib.Path(a) for a in argv if (pathlib.Path(a) / "results.json").exists()]
  if not folders:
    sys.exit("usage: python -m experiments.results_table RUN_DIR [RUN_DIR ...] "
             "(folders holding a results.json)")
  print("| run | config | data (train images) | epochs | test MSE | SSE/image | PSNR dB "
        "| mean code activation | denoising PSNR dB (noisy → denoised) | train s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for folder in folders:
    print(row(folder))


if __name__ == "__main__":
  main(sys.argv[1:])
