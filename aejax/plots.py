"""Pictures a run leaves behind (matplotlib, no display needed)."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; never needs a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def reconstruction_grid(rows: list[tuple[str, np.ndarray]], path: str | pathlib.Path) -> None:
  """One row of images per ``(title, images [N, H, W, C] in [0, 1])``, saved as PNG."""
  n = max(len(images) for _, images in rows)
  fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.25 * len(rows)), squeeze=False)
  for r, (title, images) in enumerate(rows):
    for c in range(n):
      ax = axes[r, c]
      ax.set_xticks([]), ax.set_yticks([])
      for spine in ax.spines.values():
        spine.set_visible(False)
      if c < len(images):
        image = np.clip(images[c], 0, 1)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                  vmin=0, vmax=1)
    axes[r, 0].set_ylabel(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
