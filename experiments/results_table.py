"""Prints a markdown table of the results.json files under one or more run folders.

    python -m experiments.results_table runs/vanilla runs/multilayer ...
    python -m experiments.results_table runs/*

One row per run: name, data, epochs, test MSE, SSE per image, PSNR, code activation,
denoising PSNRs where the run had a corruption, and train seconds. A sweep's run
(``config.sweep``) gives one row per setting of its non-seed keys, each figure as
mean ± standard deviation over that setting's seeds.
"""

import json
import pathlib
import sys


def _row(name: str, r: dict, figure) -> str:
  denoise = (f"{figure('denoising.psnr_noisy_db', 2)} → "
             f"{figure('denoising.psnr_denoised_db', 2)}" if "denoising" in r else "–")
  return (f"| `{name}` | {r['name']} | {r['dataset']['name']} ({r['dataset']['n_train']:,}) "
          f"| {r['epochs']} | {figure('test.mse', 5)} | {figure('test.sse_per_image', 2)} "
          f"| {figure('test.psnr_db', 2)} | {figure('test.code_mean_activation', 3)} "
          f"| {denoise} | {r['train_seconds']:.0f} |")


def rows(workdir: pathlib.Path) -> list[str]:
  r = json.loads((workdir / "results.json").read_text())
  if "summary" not in r:
    def figure(key, digits):
      section, name = key.split(".")
      return f"{r[section][name]:.{digits}f}"
    return [_row(workdir.name, r, figure)]
  out = []
  for group in r["summary"]:
    setting = ", ".join(f"{k}={v:g}" for k, v in group["setting"].items())
    stats, seeds = group["metrics"], len(group["members"])
    def figure(key, digits, stats=stats, seeds=seeds):  # one seed has no spread to give
      s = stats[key]
      spread = f" ± {s['std']:.{digits}f}" if seeds > 1 else ""
      return f"{s['mean']:.{digits}f}{spread}"
    label = (f"{workdir.name}{' ' + setting if setting else ''} "
             f"({seeds} seed{'s' if seeds > 1 else ''})")
    out.append(_row(label, r, figure))
  return out


def main(argv: list[str]) -> None:
  folders = [pathlib.Path(a) for a in argv if (pathlib.Path(a) / "results.json").exists()]
  if not folders:
    sys.exit("usage: python -m experiments.results_table RUN_DIR [RUN_DIR ...] "
             "(folders holding a results.json)")
  print("| run | config | data (train images) | epochs | test MSE | SSE/image | PSNR dB "
        "| mean code activation | denoising PSNR dB (noisy → denoised) | train s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for folder in folders:
    print("\n".join(rows(folder)))


if __name__ == "__main__":
  main(sys.argv[1:])
