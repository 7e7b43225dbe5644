"""The article's claim from Python: an autoencoder as a scikit-learn transformer against
PCA, at 2, 8, 32 and 64 components on MNIST.

    python -m experiments.transformer_vs_pca --data_dir=path/to/mnist \
        --out=docs/transformer_vs_pca.json --plot=docs/transformer_vs_pca.png

For each width, ``AutoencoderTransformer(n_components=k)`` (the vanilla 784-k-784
autoencoder, ``epochs`` epochs on the training images as [N, 784] floats in [0, 1])
and ``sklearn.decomposition.PCA(n_components=k)``, both fit on the training set:

- reconstruction error: mean squared error over the test images' pixels of
  ``inverse_transform(transform(x))``;
- a probe: test accuracy of a logistic regression (on standardised codes, as
  ``aejax.analysis.probe_accuracy``) trained on the training images' codes.

The same two lines of scikit-learn make both, which is the point: the autoencoder
goes where PCA goes. Every number is one run of seed 0.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
from absl import app, flags
from sklearn import decomposition, exceptions, linear_model, pipeline, preprocessing

from aejax import config as config_lib, data
from aejax.images import to_float
from aejax.sklearn import AutoencoderTransformer

_DATA_DIR = flags.DEFINE_string("data_dir", "", "MNIST IDX folder (empty: found as "
                                "--config.data_dir finds it, else the bundled sample).")
_WIDTHS = flags.DEFINE_list("widths", ["2", "8", "32", "64"], "Components to compare at.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "The autoencoders' epochs.")
_OUT = flags.DEFINE_string("out", None, "Where to write the figures (JSON).")
_PLOT = flags.DEFINE_string("plot", None, "Where to draw them (PNG); none without it.")


def probe(train_codes, train_labels, test_codes, test_labels) -> float:
  """Test accuracy of a logistic regression on standardised codes."""
  model = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                 linear_model.LogisticRegression(max_iter=300))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", exceptions.ConvergenceWarning)  # stated in the docs
    model.fit(train_codes, train_labels)
  return float(model.score(test_codes, test_labels))


def compare(reducer, x_train, y_train, x_test, y_test) -> dict:
  """Fit ``reducer`` on ``x_train``; its test reconstruction MSE and probe accuracy."""
  start = time.perf_counter()
  train_codes = reducer.fit_transform(x_train)
  seconds = time.perf_counter() - start
  test_codes = reducer.transform(x_test)
  reconstruction = reducer.inverse_transform(test_codes).reshape(x_test.shape)
  return {"mse": float(np.mean(np.square(reconstruction.astype(np.float64) - x_test))),
          "probe_accuracy": probe(train_codes, y_train, test_codes, y_test),
          "fit_seconds": round(seconds, 1)}


def plot(rows: list[dict], path: str) -> None:
  import matplotlib  # noqa: PLC0415 - only when asked for a picture
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  for method, style in (("autoencoder", "o-"), ("pca", "s--")):
    widths = [r["n_components"] for r in rows]
    axes[0].plot(widths, [r[method]["mse"] for r in rows], style, label=method)
    axes[1].plot(widths, [r[method]["probe_accuracy"] for r in rows], style, label=method)
  for ax, title in zip(axes, ("test reconstruction MSE", "logistic probe, test accuracy")):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("components")
    ax.set_title(title)
    ax.legend()
  axes[0].set_yscale("log")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  from aejax import plots  # noqa: PLC0415
  plots.to_palette_png(path)


def main(argv):
  del argv
  config = config_lib.defaults()
  config.data_dir = _DATA_DIR.value
  dataset = data.load(config)
  flat = lambda x: to_float(x).reshape(len(x), -1)
  x_train, x_test = flat(dataset.train_images), flat(dataset.test_images)
  y_train, y_test = dataset.train_labels, dataset.test_labels
  rows = []
  for width in map(int, _WIDTHS.value):
    autoencoder = AutoencoderTransformer(n_components=width, epochs=_EPOCHS.value,
                                         standardize=False)
    rows.append({"n_components": width,
                 "autoencoder": compare(autoencoder, x_train, y_train, x_test, y_test),
                 "pca": compare(decomposition.PCA(n_components=width), x_train, y_train,
                                x_test, y_test)})
    print(json.dumps(rows[-1]), flush=True)
  record = dataset.record()
  report = {"dataset": {k: record[k] for k in ("name", "source", "n_train", "n_test",
                                               "fingerprint")},
            "epochs": _EPOCHS.value, "rows": rows}
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(report, f, indent=1)
  if _PLOT.value:
    plot(rows, _PLOT.value)


if __name__ == "__main__":
  app.run(main)
