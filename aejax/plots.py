"""Pictures a run leaves behind (matplotlib, no display needed)."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; never needs a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def reconstruction_grid(rows: list[tuple[str, np.ndarray]], path: str | pathlib.Path) -> None:
  """One row of images per ``(title, images [N, H, W, C] in [0, 1])``, saved as PNG.
  Each row is one picture, its images side by side with a white gap (one axes per
  row: a figure of an axes per image took seconds to lay out)."""
  n = max(len(images) for _, images in rows)
  fig, axes = plt.subplots(len(rows), 1, figsize=(1.1 * n, 1.25 * len(rows)), squeeze=False)
  for ax, (title, images) in zip(axes[:, 0], rows):
    images = np.clip(np.asarray(images, np.float32), 0, 1)
    _, height, width, channels = images.shape
    gap = max(1, width // 8)
    strip = np.ones((height, n * (width + gap) - gap, channels), np.float32)
    for c, image in enumerate(images):
      strip[:, c * (width + gap):c * (width + gap) + width] = image
    ax.imshow(strip[..., 0] if channels == 1 else strip, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    for spine in ax.spines.values():
      spine.set_visible(False)
    ax.set_ylabel(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# ------------------------------------------------- figures of experiments.report

_DIGIT_COLOURS = plt.get_cmap("tab10")


def _save(fig, path: str | pathlib.Path, dpi: int = 90) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  to_palette_png(path)


def to_palette_png(path: str | pathlib.Path) -> None:
  """Rewrites a PNG with a 256-colour palette: plots lose nothing visible and the
  file shrinks about threefold (scatter plots of 5,000 points stay under 200 KB)."""
  from PIL import Image  # only the report's figures need it
  with Image.open(path) as image:
    palette = image.convert("RGB").quantize(256)
  palette.save(path, optimize=True)


def training_curves(groups: dict[str, dict[str, list[dict]]], path: str | pathlib.Path,
                    key: str = "loss") -> None:
  """One panel per group: train (dashed) and test (solid) ``key`` per epoch, log scale.

  ``groups``: ``{panel title: {run name: metrics.jsonl records}}``.
  """
  fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.6), squeeze=False)
  for ax, (title, runs) in zip(axes[0], groups.items()):
    for i, (name, records) in enumerate(runs.items()):
      epochs = [r["epoch"] for r in records]
      colour = plt.get_cmap("tab10")(i % 10)
      ax.plot(epochs, [r["test"][key] for r in records], "-", color=colour, label=name,
              marker="." if len(records) < 3 else None)
      ax.plot(epochs, [r["train"][key] for r in records], "--", color=colour, alpha=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{key} (solid: test, dashed: train)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
  _save(fig, path)


def code_maps_2d(panels: list[tuple[str, np.ndarray]], labels: np.ndarray,
                 path: str | pathlib.Path, max_points: int = 5000) -> None:
  """Side-by-side scatter plots of 2-D codes ``[N, 2]``, coloured by digit ``labels [N]``."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
  shown = slice(0, max_points)
  for ax, (title, codes) in zip(axes[0], panels):
    ax.scatter(codes[shown, 0], codes[shown, 1], c=labels[shown], cmap=_DIGIT_COLOURS,
               vmin=-0.5, vmax=9.5, s=2, alpha=0.6, rasterized=True)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
  handles = [plt.Line2D([], [], ls="", marker="o", color=_DIGIT_COLOURS(d), label=str(d))
             for d in range(10)]
  axes[0, -1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5),
                     title="digit")
  _save(fig, path)


def error_vs_code_size(sizes: list[int], errors: dict[str, list[float]],
                       sparsity: dict[str, list[float]], path: str | pathlib.Path) -> None:
  """Left: squared error per image vs code size, one line per method (log-log, a
  zero error drawn at the bottom). Right: code sparsity measures vs code size."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
  positive = [v for values in errors.values() for v in values if v > 0]
  floor = min(positive) / 3 if positive else 1e-3
  for name, values in errors.items():
    left.plot(sizes, [max(v, floor) for v in values], marker="o", label=name)
  left.set_xscale("log", base=2), left.set_yscale("log")
  left.set_xlabel("code size (units)"), left.set_ylabel("test squared error per image")
  left.set_title("reconstruction error (0 drawn at the bottom)", fontsize=10)
  left.legend(fontsize=8)
  for name, values in sparsity.items():
    right.plot(sizes, values, marker="o", label=name)
  right.set_xscale("log", base=2)
  right.set_xlabel("code size (units)"), right.set_ylabel("fraction")
  right.set_ylim(-0.02, 1.02)
  right.set_title("autoencoder code sparsity (test set)", fontsize=10)
  right.legend(fontsize=8)
  _save(fig, path)


def denoising_curves(levels: list[float], scores: dict[str, dict[str, dict[str, list[float]]]],
                     path: str | pathlib.Path) -> None:
  """PSNR (top) and SSIM (bottom) vs noise level, one column per corruption.

  ``scores``: ``{corruption: {series: {"psnr_db": [...], "ssim": [...]}}}``.
  """
  fig, axes = plt.subplots(2, len(scores), figsize=(4.2 * len(scores), 6.4), squeeze=False)
  for c, (corruption, series) in enumerate(scores.items()):
    for name, values in series.items():
      axes[0, c].plot(levels, values["psnr_db"], marker="o", label=name)
      axes[1, c].plot(levels, values["ssim"], marker="o", label=name)
    axes[0, c].set_title(corruption, fontsize=10)
    axes[0, c].set_ylabel("PSNR (dB)"), axes[1, c].set_ylabel("SSIM")
    axes[1, c].set_xlabel("noise level")
    axes[0, c].legend(fontsize=7)
  _save(fig, path)


def rate_distortion(panels: dict[str, dict[str, tuple[list[float], list[float]]]],
                    path: str | pathlib.Path, ylabel: str = "PSNR (dB)") -> None:
  """PSNR (or ``ylabel``'s measure) vs bytes per image, one panel per data set:
  ``{data: {series: (bytes, values)}}``."""
  fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False,
                           sharey=True)
  styles = ["o-", "s--", "^-", "v-", "D-", "x-"]
  for ax, (title, series) in zip(axes[0], panels.items()):
    for i, (name, (sizes, psnrs)) in enumerate(series.items()):
      ax.plot(sizes, psnrs, styles[i % len(styles)], label=name, markersize=4)
    ax.set_xscale("log")
    # Labels at the decades only: minor labels (2×10¹, 3×10¹, …) overlap.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("bytes per image"), ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel(ylabel)
  axes[0, 0].legend(fontsize=7)
  _save(fig, path)
