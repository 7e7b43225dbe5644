"""Prints a markdown table of the results.json files under one or more run folders.

    python -m experiments.results_table runs/vanilla runs/multilayer ...
    python -m experiments.results_table runs/*

One row per run: name, data, epochs, test MSE, SSE per image, PSNR, code activation,
denoising PSNRs where the run had a corruption, and train seconds. A sweep's run
(``config.sweep``) gives one row per setting of its non-seed keys, each figure as
mean ± standard deviation over that setting's seeds. A figure a run does not have
(PSNR of a run on vectors, a denoising PSNR) is "–"; every folder left out (no
results.json, one cut short or of another shape) is named on stderr, one line each.
"""

import json
import pathlib
import sys


DASH = "–"  # a figure the run does not have (a run on vectors has no PSNR)


def _get(tree: dict, key: str):
  """``tree["a"]["b"]`` for key "a.b"; None where any part is missing."""
  for part in key.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return tree


def _row(name: str, r: dict, figure) -> str:
  denoise = (f"{figure('denoising.psnr_noisy_db', 2)} → "
             f"{figure('denoising.psnr_denoised_db', 2)}" if "denoising" in r else DASH)
  dataset = r.get("dataset") or {}
  n_train = dataset.get("n_train")
  data = f"{dataset.get('name', DASH)}{f' ({n_train:,})' if isinstance(n_train, int) else ''}"
  seconds = r.get("train_seconds")
  return (f"| `{name}` | {r.get('name', DASH)} | {data} "
          f"| {r.get('epochs', DASH)} | {figure('test.mse', 5)} | "
          f"{figure('test.sse_per_image', 2)} "
          f"| {figure('test.psnr_db', 2)} | {figure('test.code_mean_activation', 3)} "
          f"| {denoise} | {DASH if seconds is None else f'{seconds:.0f}'} |")


def _number(value, digits: int) -> str:
  return f"{value:.{digits}f}" if isinstance(value, (int, float)) else DASH


def rows(workdir: pathlib.Path) -> list[str]:
  """The table's rows of one run; ValueError (one line) if its results.json is not
  one aejax writes."""
  path = workdir / "results.json"
  try:
    r = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not complete JSON ({e.msg}, line {e.lineno}).") from None
  if not isinstance(r, dict) or not isinstance(r.get("test", r.get("summary")), (dict, list)):
    raise ValueError(f"{path} is not an aejax run's results (no test figures).")
  if "summary" not in r:
    return [_row(workdir.name, r, lambda key, digits: _number(_get(r, key), digits))]
  out = []
  for group in r["summary"]:
    setting = ", ".join(f"{k}={v:g}" for k, v in group["setting"].items())
    stats, seeds = group["metrics"], len(group["members"])
    def figure(key, digits, stats=stats, seeds=seeds):  # one seed has no spread to give
      s = stats.get(key)
      if s is None:
        return DASH
      spread = f" ± {s['std']:.{digits}f}" if seeds > 1 else ""
      return f"{s['mean']:.{digits}f}{spread}"
    label = (f"{workdir.name}{' ' + setting if setting else ''} "
             f"({seeds} seed{'s' if seeds > 1 else ''})")
    out.append(_row(label, r, figure))
  return out


def main(argv: list[str]) -> None:
  if not argv:
    sys.exit("usage: python -m experiments.results_table RUN_DIR [RUN_DIR ...] "
             "(folders holding a results.json)")
  table, left_out = [], []
  for folder in map(pathlib.Path, argv):
    if not (folder / "results.json").is_file():
      left_out.append(f"{folder} (no results.json)")
      continue
    try:
      table.extend(rows(folder))
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
      reason = str(e) if isinstance(e, (ValueError, OSError)) else f"no {e}"
      left_out.append(f"{folder} ({reason})")
  if table:
    print("| run | config | data (train images) | epochs | test MSE | SSE/image | PSNR dB "
          "| mean code activation | denoising PSNR dB (noisy → denoised) | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
  for entry in left_out:
    print(f"left out: {entry}", file=sys.stderr)
  if not table:
    sys.exit("error: no run to show; results_table reads folders holding a results.json.")


if __name__ == "__main__":
  main(sys.argv[1:])
