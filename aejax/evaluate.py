"""Test-set metrics of a trained autoencoder, in one compiled call over the test set.

Definitions (all on images scaled to [0, 1]):
- ``mse``: mean over test images and pixels of the squared error of the
  reconstruction of the *clean* image;
- ``sse_per_image``: the same error summed over each image's pixels, averaged over
  images (Hinton & Salakhutdinov's "squared error per image");
- ``psnr_db``: ``10 log10(1 / mse)`` — the PSNR of the test set's mean squared error;
- ``bce``: pixel-wise binary cross-entropy (Keras's ``binary_crossentropy``);
- ``code_mean_activation``: mean of |code| over test images and code units;
- ``code_fraction_zero``: fraction of code units that are exactly 0.
For data not in [0, 1] (standardised vectors) there is no ``psnr_db`` and no ``bce``;
with a standardisation's ``scale`` (the features' standard deviations),
``mse_data_units`` is the error in the data's own units, ``mean((r - x)² std²)``.
With a corruption, ``denoising`` gives the PSNR of the corrupted input and of the
model's output on it, both against the clean image. The loss terms are the training
objective's (``objective.Objective``, the same object the train step uses), with the
corrupted input and the clean target.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from aejax import code_stats, corruption as corruption_lib, losses, models, sharding
from aejax.images import psnr_db, to_float

# The groups of a model's figures in results.json (and in a sweep member's entry), all
# made by ``model_figures``: what a sweep's summary and results tables read.
FIGURES = ("test", "denoising", "code_stats", "model_eval")
# Per-example metrics that reach results.json elsewhere than under ``test``: the
# denoising figures (their own group) and the loss terms (``test.loss_terms``). Every
# other metric ``Evaluator._per_example`` computes is written under ``test``.
INTERNAL = ("mse_noisy", "mse_denoised")
# The order ``test`` lists its metrics in; any other comes after them.
_TEST_ORDER = ("mse", "sse_per_image", "bce", "code_mean_activation", "code_fraction_zero",
               "mse_data_units")


def model_figures(run, variables, evaluator: "Evaluator", dataset, coder=None) -> dict:
  """The one place a model's figures are computed, for training's results.json,
  ``experiments.evaluate_run``, a sweep's members and ``aejax.Trained.evaluate``:
  the evaluator's test metrics (``test``, ``denoising``), the code statistics
  (``code_stats``) and the family's own (``model_eval``). ``run``: an
  ``engine.Run``; ``coder``: its model's compiled (encode, decode), shared by a
  sweep's members so that they compile once (None: made here; a model without them
  has no code statistics)."""
  results = evaluator.results(variables)
  if coder is None and hasattr(run.model, "encode") and hasattr(run.model, "decode"):
    coder = (models.compiled_apply(run.model, "encode"),
             models.compiled_apply(run.model, "decode"))
  if coder is not None:
    # L0, dead units over one pass of the training set, variance explained: for every
    # model, so an L1 code and a TopK code are measured alike.
    results["code_stats"] = code_stats.code_statistics(
        *coder, variables, dataset.train_images, dataset.test_images,
        run.config.eval_batch_size)
  if run.family.evaluate is not None:
    results["model_eval"] = run.family.evaluate(run.model, variables, dataset,
                                                jax.random.fold_in(run.keys.eval, 2))
  return results


class Evaluator:
  """Holds the padded test set on the device and one compiled evaluation.

  ``run``: what evaluates, an ``engine.Run`` (its objective, corruption, mesh, the
  key ``keys.eval`` and ``config.eval_batch_size``).
  """

  def __init__(self, run, test_images: np.ndarray, test_labels: np.ndarray | None = None,
               scale: np.ndarray | None = None):
    self.objective, self.corrupt = run.objective, run.corrupt
    self.bounded = run.plan.bounded
    self._scale = None if scale is None else np.asarray(scale, np.float32)
    self.denoising = self.corrupt is not corruption_lib.identity
    mesh, batch_size, key = run.mesh, run.config.eval_batch_size, run.keys.eval
    n = len(test_images)
    devices = mesh.size
    # Each chunk is sharded over the devices: a multiple of their number, padded.
    batch_size = -(-min(batch_size, n) // devices) * devices
    chunks = -(-n // batch_size)
    pad = chunks * batch_size - n
    padded = np.concatenate([test_images, np.zeros((pad, *test_images.shape[1:]),
                                                   test_images.dtype)])
    self.n = n
    spec = P(None, "data")
    self._images = sharding.put(
        mesh, padded.reshape(chunks, batch_size, *test_images.shape[1:]), spec)
    self._mask = sharding.put(mesh, (np.arange(chunks * batch_size) < n).reshape(
        chunks, batch_size), spec)
    self._key = key
    self._sums = jax.jit(self._sums_impl, out_shardings=sharding.replicated(mesh))
    self._grid = jax.jit(self._grid_impl, out_shardings=sharding.replicated(mesh))
    self._grid_images = sharding.put(mesh, _one_per_label(test_images, test_labels))

  def with_key(self, key: jax.Array) -> "Evaluator":
    """The same evaluation (and its compiled programs) with another key: a sweep's
    members that differ only in their seed share one."""
    other = copy.copy(self)
    other._key = key
    return other

  def _per_example(self, variables, images_u8, key):
    # The keys as in the train step: the corruption's, and a fold of it for the model.
    x = to_float(images_u8)
    model_key = jax.random.fold_in(key, 1)
    params, state = _split(variables)
    _, terms, outputs = self.objective.per_example(params, {"inputs": x, "target": x},
                                                   model_key, state)
    recon = {"reconstruction": outputs["reconstruction"], "target": x}
    flat_code = outputs["code"].reshape(len(x), -1).astype(jnp.float32)
    out = {
        "mse": losses.mse(**recon),
        "sse_per_image": losses.sse(**recon),
        "code_mean_activation": jnp.mean(jnp.abs(flat_code), axis=-1),
        "code_fraction_zero": jnp.mean(flat_code == 0, axis=-1),
    }
    if self.bounded:
      out["bce"] = losses.binary_cross_entropy(**recon)
    if self._scale is not None:
      out["mse_data_units"] = losses.mse(reconstruction=recon["reconstruction"] * self._scale,
                                         target=x * self._scale)
    if self.denoising:
      noisy = self.corrupt(key, x)
      _, terms, denoised = self.objective.per_example(
          params, {"inputs": noisy, "target": x}, model_key, state)
      out["mse_noisy"] = losses.mse(reconstruction=noisy, target=x)
      out["mse_denoised"] = losses.mse(reconstruction=denoised["reconstruction"], target=x)
    weights = self.objective.weights
    out["term/loss"] = sum(weights[name] * terms[name] for name in weights)
    return {**out, **{f"term/{name}": value for name, value in terms.items()}}

  def _sums_impl(self, variables, all_images, all_masks, key):
    # The test set comes in as arguments: a jitted function may not close over arrays
    # that span processes.
    def body(totals, chunk):
      i, images, mask = chunk
      values = self._per_example(variables, images, jax.random.fold_in(key, i))
      return jax.tree.map(lambda t, v: t + jnp.sum(jnp.where(mask, v, 0.0)), totals,
                          values), None

    shapes = jax.eval_shape(self._per_example, variables, all_images[0], key)
    zeros = jax.tree.map(lambda _: jnp.zeros((), jnp.float32), shapes)
    indices = jnp.arange(all_images.shape[0])
    totals, _ = jax.lax.scan(body, zeros, (indices, all_images, all_masks))
    return totals

  def _means(self, variables) -> dict[str, float]:
    sums = jax.device_get(self._sums(variables, self._images, self._mask, self._key))
    return {k: float(v) / self.n for k, v in sums.items()}

  def loss_terms(self, variables) -> dict[str, float]:
    """The training objective's terms on the test set (with the corruption)."""
    means = self._means(variables)
    return {k.removeprefix("term/"): v for k, v in means.items() if k.startswith("term/")}

  def results(self, variables) -> dict:
    """Test-set metrics of the model with ``variables`` (``{"params": ...}``)."""
    means = self._means(variables)
    written = [k for k in means if k not in INTERNAL and not k.startswith("term/")]
    rank = lambda k: _TEST_ORDER.index(k) if k in _TEST_ORDER else len(_TEST_ORDER)
    test = {k: means[k] for k in sorted(written, key=rank)}
    if self.bounded:
      test["psnr_db"] = psnr_db(means["mse"])
    test["loss_terms"] = {k.removeprefix("term/"): v for k, v in means.items()
                          if k.startswith("term/")}
    out = {"test": test}
    if self.denoising:
      out["denoising"] = {"mse_noisy": means["mse_noisy"],
                          "mse_denoised": means["mse_denoised"],
                          "psnr_noisy_db": psnr_db(means["mse_noisy"]),
                          "psnr_denoised_db": psnr_db(means["mse_denoised"])}
    return out

  def grid_rows(self, variables) -> list[tuple[str, np.ndarray]]:
    """Rows for the reconstruction grid: originals, (corrupted,) reconstructions."""
    rows = jax.device_get(self._grid(variables, self._grid_images, self._key))
    titles = ["original", *(["corrupted"] if self.denoising else []),
              "denoised" if self.denoising else "reconstruction"]
    return [(title, np.asarray(images)) for title, images in zip(titles, rows)]

  def _grid_impl(self, variables, images_u8, key):
    x = to_float(images_u8)
    rows = [x]
    key = jax.random.fold_in(key, 1 << 30)
    if self.denoising:
      x = self.corrupt(key, x)
      rows.append(x)
    params, state = _split(variables)
    rows.append(self.objective.outputs(params, x, jax.random.fold_in(key, 1), state)[
        "reconstruction"])
    return rows


def _split(variables: dict) -> tuple[dict, dict]:
  """Flax variables -> (params, the other collections)."""
  return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def _one_per_label(images: np.ndarray, labels: np.ndarray | None, n: int = 10) -> np.ndarray:
  """The first test image of each label (the first ``n`` images without labels, or
  with a single one: unlabelled data)."""
  if labels is None or len(np.unique(labels)) < 2:
    return images[:n]
  firsts = [np.flatnonzero(labels == label)[0] for label in np.unique(labels)[:n]]
  return images[np.array(firsts)]
