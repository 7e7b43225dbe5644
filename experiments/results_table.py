"""Prints a markdown table of the results.json files under one or more run folders,
and one of each search's search.json (``aejax.search``).

    python -m experiments.results_table runs/vanilla runs/multilayer ...
    python -m experiments.results_table runs/*
    python -m experiments.results_table runs/search

One row per run: name, data, epochs, test MSE, SSE per image, PSNR, code activation,
denoising PSNRs where the run had a corruption, and train seconds. A sweep's run
(``config.sweep``) gives one row per setting of its non-seed keys, each figure as
mean ± standard deviation over that setting's seeds. A figure a run does not have
(PSNR of a run on vectors, a denoising PSNR) is "–"; every folder left out (no
results.json, one cut short or of another shape) is named on stderr, one line each.

A search's folder (search.json) gives one row per trial, best first: its state, its
numbers, the epochs it reached, its validation figure (the search's objective) and,
for the best trial, its test MSE and the command that trains it again.
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


def search_rows(workdir: pathlib.Path) -> list[str]:
  """The search table's rows of one search, best trial first, then by trial number
  (a trial without a figure, pruned, failed or running, after those with one);
  ValueError (one line) if its search.json is not one ``aejax.search`` writes."""
  path = workdir / "search.json"
  try:
    s = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not complete JSON ({e.msg}, line {e.lineno}).") from None
  if not isinstance(s, dict) or not isinstance(s.get("trials"), list):
    raise ValueError(f"{path} is not an aejax search (no trials).")
  best = s.get("best") or {}
  sign = -1 if s.get("direction") == "maximize" else 1

  def order(t):
    value = t.get("value")
    return (value is None, sign * value if value is not None else 0, t["number"])

  out = []
  for t in sorted(s["trials"], key=order):
    numbers = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in t["params"].items())
    epochs = max(map(int, t["rungs"]), default=0)
    mark = t["number"] == best.get("number")
    test = _number(_get(best, "test.mse"), 5) if mark else ""
    state = t["state"] + (" (lost)" if t.get("lost") else "")
    out.append(f"| `{workdir.name}` | {t['number']}{' ★' if mark else ''} | {state} "
               f"| {numbers} | {epochs} | {_number(t.get('value'), 6)} | {test} |")
  return out


def _search_table(rows_: list[str], searches: list[pathlib.Path]) -> None:
  print("| search | trial | state | numbers | epochs | validation | test MSE |")
  print("|---|---|---|---|---|---|---|")
  print("\n".join(rows_))
  for folder in searches:
    s = json.loads((folder / "search.json").read_text())
    if (s.get("best") or {}).get("command"):
      print(f"\n`{folder.name}`: {s['objective']} ({s['direction']}); best trial "
            f"{s['best']['number']}: `{s['best']['command']}`")


def main(argv: list[str]) -> None:
  if not argv:
    sys.exit("usage: python -m experiments.results_table RUN_DIR [RUN_DIR ...] "
             "(folders holding a results.json or a search.json)")
  table, searched, searches, left_out = [], [], [], []
  for folder in map(pathlib.Path, argv):
    if not (folder / "results.json").is_file() and (folder / "search.json").is_file():
      try:
        searched.extend(search_rows(folder))
        searches.append(folder)
      except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        reason = str(e) if isinstance(e, (ValueError, OSError)) else f"no {e}"
        left_out.append(f"{folder} ({reason})")
      continue
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
  if searched:
    if table:
      print()
    _search_table(searched, searches)
  for entry in left_out:
    print(f"left out: {entry}", file=sys.stderr)
  if not table and not searched:
    sys.exit("error: no run to show; results_table reads folders holding a results.json "
             "(a run) or a search.json (a search).")


if __name__ == "__main__":
  main(sys.argv[1:])
