"""Pictures of a sparse autoencoder's dictionary atoms on exported activations: for
each of a few latents, the test digits that activate it most.

    python -m experiments.sae_atoms --workdir runs/sae_mnist --data_dir=<MNIST folder> \
        --out=docs/sae_mnist_atoms.png

A latent of an SAE trained on a classifier's activations is a direction in that
classifier's hidden space, not a picture; what it stands for shows in the inputs
that drive it. The latents drawn are spread over the ranks of how often they fire
(``pick_latents``), so frequent and rare atoms both show.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from aejax import analysis, config as config_lib, data, plots


def pick_latents(frequency: np.ndarray, n: int, min_frequency: float = 0.0) -> np.ndarray:
  """``n`` latents firing more often than ``min_frequency``, at evenly spaced ranks of
  ``frequency`` (most frequent first): int ``[min(n, such latents)]``."""
  order = np.argsort(-frequency, kind="stable")
  live = order[frequency[order] > min_frequency]
  return live[np.linspace(0, len(live) - 1, min(n, len(live))).round().astype(int)]


def top_examples(codes: np.ndarray, latents: np.ndarray, per_latent: int) -> np.ndarray:
  """For each latent, the indices of the examples with its largest activations,
  largest first: int ``[len(latents), per_latent]``."""
  return np.argsort(-codes[:, latents], axis=0, kind="stable")[:per_latent].T


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  run = analysis.load_run(FLAGS.workdir)
  vectors = np.load(run.config.dataset.removeprefix("npz:"))["test"]
  config = config_lib.defaults()
  config.data_dir = FLAGS.data_dir
  images = data.load(config).test_images  # in the order the activations were exported
  codes = run.encode(vectors)
  frequency = (codes > 0).mean(0)
  # Only latents with at least per_latent firing examples: each row all its own.
  latents = pick_latents(frequency, FLAGS.latents, (FLAGS.per_latent - 0.5) / len(codes))
  rows = [(f"#{latent} {frequency[latent]:.1%}", analysis.to_float(images[indices]))
          for latent, indices in zip(latents, top_examples(codes, latents, FLAGS.per_latent))]
  plots.reconstruction_grid(rows, FLAGS.out)
  plots.to_palette_png(FLAGS.out)
  print(json.dumps({"out": FLAGS.out, "latents": latents.tolist(),
                    "frequency": [round(float(frequency[i]), 4) for i in latents],
                    "latents_firing_on_a_test_example": int((frequency > 0).sum()),
                    "latents_firing_on_1pct": int((frequency >= 0.01).sum())}))


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "The SAE's workdir.")
  flags.DEFINE_string("data_dir", "", "Folder of the MNIST IDX files.")
  flags.DEFINE_string("out", "docs/sae_mnist_atoms.png", "The picture to write.")
  flags.DEFINE_integer("latents", 12, "Latents to draw.")
  flags.DEFINE_integer("per_latent", 10, "Top-activating digits per latent.")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
