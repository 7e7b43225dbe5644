"""Measuring trained runs against baselines: PCA, probes, PSNR/SSIM, JPEG, sparsity.

Everything here works on NumPy arrays on the host, apart from the model's forward
pass and SSIM, which run compiled on the device. Conventions (as in ``evaluate.py``):
images are ``uint8 [N, H, W, C]`` on disk and float32 in [0, 1] for every metric;
"squared error per image" (SSE) is summed over an image's pixels and averaged over
images (Hinton & Salakhutdinov, 2006).

- ``load_run(workdir)`` restores a trained run (its newest complete orbax checkpoint,
  verified: config, data shape and parameters) as a ``Run`` with
  ``encode``/``decode``/``reconstruct``, writing nothing in the workdir.
- PSNR is ``evaluate.psnr_db`` of the mean squared error over all images and
  pixels: **infinite** (not capped) for identical images.
- SSIM is dm-pix's (Wang et al. 2004: 11×11 Gaussian window, σ = 1.5, K1 = 0.01,
  K2 = 0.03, valid region), averaged over images. dm-pix rather than scikit-image
  because it is batched and jit-compiled next to the model (about 5× faster than
  scikit-image's per-image loop on a 2-core CPU) while giving scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` to 1e-6, which the tests check.
- PCA is scikit-learn's, fit on the training images.
- Probes: scikit-learn's logistic regression (on standardised features) and
  k-nearest neighbours (Euclidean, on the features as they are).
- JPEG is Pillow's; an autoencoder's "file" is its code, uniformly quantized per
  unit to ``bits`` bits between the unit's minimum and maximum on training images.
- Code sensitivity (the contractive autoencoder's claim): ``Run.jacobian_frobenius_sq``
  is the exact ``||∂ code / ∂ x||²_F`` per image, by autodiff, for any encoder;
  ``code_sensitivity`` measures how far codes move under small gaussian input noise.
"""

from __future__ import annotations

import functools
import io
import math
import pathlib
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
from sklearn import decomposition, exceptions, linear_model, neighbors, pipeline, preprocessing

from aejax import checkpoint_reader, config as config_lib, corruption as corruption_lib, data as data_lib
from aejax import engine, evaluate, models
from aejax.objective import to_float  # noqa: F401 (the report scales images with it)

# ------------------------------------------------------------------ a trained run


class Run:
  """A trained autoencoder: its config, model and restored parameters.

  ``encode(images [N, H, W, C] float in [0, 1]) -> codes [N, ...]``,
  ``decode(codes) -> images``, ``reconstruct(images) -> images``; all NumPy in and
  out, run in fixed-size compiled batches (the last one padded) so that any N
  reuses one compilation.
  """

  batch_size = 1000  # images per compiled call

  def __init__(self, workdir: pathlib.Path, config: ml_collections.ConfigDict,
               model: Any, variables: Any, step: int, meta: dict | None = None):
    self.workdir, self.config, self.model = workdir, config, model
    self.variables, self.step = variables, step
    self.meta = meta or {}
    self._encode = models.compiled_apply(model, "encode")
    self._decode = models.compiled_apply(model, "decode")

    def frobenius_sq(variables, x):  # one image [H, W, C] -> ||∂ code / ∂ x||²_F
      encode = lambda x: model.apply(variables, x[None], method="encode").reshape(-1)
      return jnp.sum(jnp.square(jax.jacrev(encode)(x)))
    self._frobenius_sq = jax.jit(jax.vmap(frobenius_sq, in_axes=(None, 0)))

  def batched(self, fn, *inputs: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """``fn(variables, *chunks)`` (a jitted apply) over the inputs' leading axis (they share it), in
    chunks of ``batch_size``, the last one padded with zeros."""
    return models.batched(fn, self.variables, *inputs,
                          batch_size=batch_size or self.batch_size)

  def encode(self, images: np.ndarray) -> np.ndarray:
    return self.batched(self._encode, images)

  def decode(self, codes: np.ndarray) -> np.ndarray:
    return self.batched(self._decode, codes)

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    return self.decode(self.encode(images))

  def jacobian_frobenius_sq(self, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """Exact ``||∂ code / ∂ x||²_F`` of each image [N, H, W, C] -> [N] (float32).

    Reverse mode, one image at a time under ``vmap``: the encoder is applied to one
    image, so no layer can mix examples. Batches of 100 keep the [B, K, H, W, C]
    Jacobians small.
    """
    return self.batched(self._frobenius_sq, images, batch_size=batch_size)


def load_run(workdir: str | pathlib.Path, member: int | None = None) -> Run:
  """Restores the trained model in ``workdir`` from its newest complete checkpoint
  that verifies (``checkpoint_reader.read_newest``): the config and data shape come from the
  checkpoint's metadata, the parameters from their own item (no optimizer is built or
  read). Nothing in the workdir is written, so a run may be training there. A sweep's
  run gives member ``member`` (0 by default), with that member's own config."""
  config, run, (step, variables, meta) = _read_newest(pathlib.Path(workdir))
  members = run.plan.members
  if members is None:
    if member not in (None, 0):
      raise ValueError(f"{workdir} holds one model, not a sweep: there is no member {member}.")
    return Run(pathlib.Path(workdir), config, run.model, variables, step, meta)
  member = member or 0
  if not 0 <= member < members.size:
    raise ValueError(f"{workdir} holds a sweep of {members.size} members; member {member} "
                     f"is not one of 0..{members.size - 1}.")
  return _member(pathlib.Path(workdir), run, variables, step, meta, member)


def load_runs(workdir: str | pathlib.Path) -> list[Run]:
  """Every model of ``workdir`` (one, or a sweep's members in order), all from the
  same checkpoint, as ``load_run`` reads it (a run training there may save newer ones
  meanwhile)."""
  config, run, (step, variables, meta) = _read_newest(pathlib.Path(workdir))
  if run.plan.members is None:
    return [Run(pathlib.Path(workdir), config, run.model, variables, step, meta)]
  return [_member(pathlib.Path(workdir), run, variables, step, meta, i)
          for i in range(run.plan.members.size)]


def _member(workdir: pathlib.Path, run, variables, step: int, meta: dict, member: int) -> Run:
  variables = jax.tree.map(lambda x: np.asarray(x[member]), variables)
  return Run(workdir, run.plan.members.configs[member], run.model, variables, step, meta)


def _read_newest(workdir: pathlib.Path):
  """``(config, engine setup, checkpoint_reader.Read)`` of the newest checkpoint that reads."""
  setups = {}

  def targets(meta: dict) -> Any:
    config = ml_collections.ConfigDict(config_lib.upgrade(meta["config"]))
    spec = data_lib.DataSpec(image_shape=tuple(meta["data"]["image_shape"]),
                             n_train=meta["data"]["n_train"],
                             bounded=meta["data"].get("bounded", True))
    setups["config"], setups["run"] = config, engine.setup(config, spec, abstract=True)
    return setups["run"].state.variables

  read = checkpoint_reader.read_newest(workdir, targets)
  return setups["config"], setups["run"], read


# ------------------------------------------------------------- images and errors


def flat(images: np.ndarray) -> np.ndarray:
  """[N, ...] -> [N, D]."""
  return np.asarray(images).reshape(len(images), -1)


def sse_per_image(*, reference: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
  """Squared error summed over each image's pixels: [N, ...] x2 -> [N]."""
  diff = flat(reconstruction).astype(np.float64) - flat(reference)
  return np.sum(np.square(diff), axis=1)


def mse(*, reference: np.ndarray, reconstruction: np.ndarray) -> float:
  """Mean over images and pixels of the squared error."""
  return float(np.mean(sse_per_image(reference=reference, reconstruction=reconstruction))
               / flat(reference).shape[1])


def psnr_db(*, reference: np.ndarray, reconstruction: np.ndarray) -> float:
  """PSNR of the mean squared error over all images, for [0, 1] images; inf if equal."""
  return evaluate.psnr_db(mse(reference=reference, reconstruction=reconstruction))


@functools.cache
def _ssim_batch():
  """The jitted SSIM of dm-pix, imported on first use: loading a run
  (``experiments.evaluate_run``) must not need the report's image libraries."""
  import dm_pix
  return jax.jit(lambda a, b: dm_pix.ssim(a, b, max_val=1.0))


def ssim(*, reference: np.ndarray, reconstruction: np.ndarray, batch_size: int = 1000) -> float:
  """Mean SSIM over images [N, H, W, C] in [0, 1] (H, W ≥ 11); 1 for identical images."""
  reference = np.asarray(reference, np.float32)
  reconstruction = np.asarray(reconstruction, np.float32)
  if reference.shape != reconstruction.shape or reference.ndim != 4:
    raise ValueError(f"ssim needs two [N, H, W, C] arrays of one shape, got "
                     f"{reference.shape} and {reconstruction.shape}.")
  total = 0.0
  for start in range(0, len(reference), batch_size):
    total += float(jnp.sum(_ssim_batch()(reference[start:start + batch_size],
                                       reconstruction[start:start + batch_size])))
  return total / len(reference)


# ----------------------------------------------------------------------------- PCA


def fit_pca(train_flat: np.ndarray, n_components: int) -> decomposition.PCA:
  """PCA of the training images [N, D] with min(n_components, D, N) components.

  Both solvers are exact: ``covariance_eigh`` diagonalises the D×D covariance, fast
  for N ≫ D (MNIST); with fewer images than dimensions (a few hundred 32×32×3 images,
  D = 3072) the SVD of the N×D data is the smaller problem.
  """
  n_images, dims = train_flat.shape
  n = min(n_components, dims, n_images)
  solver = "covariance_eigh" if n_images >= dims else "full"
  return decomposition.PCA(n_components=n, svd_solver=solver).fit(train_flat)


def pca_reconstruct(pca: decomposition.PCA, x_flat: np.ndarray) -> np.ndarray:
  """Projects [N, D] onto the components and back: the rank-k reconstruction."""
  return pca.inverse_transform(pca.transform(x_flat))


# -------------------------------------------------------------- codes as features


def probe_accuracy(train_features: np.ndarray, train_labels: np.ndarray,
                   test_features: np.ndarray, test_labels: np.ndarray, *,
                   n_neighbors: int = 5, max_iter: int = 300) -> dict[str, float]:
  """Test accuracy of a logistic-regression probe and of k-NN on features [N, F].

  The logistic regression sees standardised features (lbfgs converges on them);
  k-NN uses Euclidean distance on the features as they are.
  """
  train_features, test_features = flat(train_features), flat(test_features)
  logistic = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                    linear_model.LogisticRegression(max_iter=max_iter))
  with warnings.catch_warnings():
    # A probe stopped at max_iter is still a probe; the limit is stated in the report.
    warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
    logistic.fit(train_features, train_labels)
  knn = neighbors.KNeighborsClassifier(n_neighbors=n_neighbors).fit(train_features,
                                                                     train_labels)
  return {"logistic": float(logistic.score(test_features, test_labels)),
          "knn": float(knn.score(test_features, test_labels))}


# ------------------------------------------------------------------------ sparsity


def code_sparsity(codes: np.ndarray) -> dict[str, float]:
  """Sparsity of codes [N, K] (any trailing shape is flattened to K units).

  ``mean_activation``: mean |code|; ``fraction_zero``: per example, the fraction of
  units exactly 0 (1 − L0/K), averaged; ``active_per_example``: mean L0;
  ``never_active``: units that are 0 for every example; ``units``: K.
  """
  codes = flat(codes)
  zero = codes == 0
  return {"mean_activation": float(np.mean(np.abs(codes))),
          "fraction_zero": float(np.mean(zero)),
          "active_per_example": float(np.mean(np.sum(~zero, axis=1))),
          "never_active": int(np.sum(np.all(zero, axis=0))),
          "units": int(codes.shape[1])}


# --------------------------------------------------------------------- compression


def code_range(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-unit minimum and maximum of codes [N, K]: the quantizer's range, [K] each."""
  codes = flat(codes)
  return codes.min(axis=0), codes.max(axis=0)


def _step(low: np.ndarray, high: np.ndarray, bits: int) -> np.ndarray:
  span = np.asarray(high, np.float64) - low
  # A unit constant on the training set needs no levels; any step then decodes to low.
  return np.where(span > 0, span / (2 ** bits - 1), 1.0)


def quantize(codes: np.ndarray, low: np.ndarray, high: np.ndarray, bits: int) -> np.ndarray:
  """Codes [N, K] -> integers in [0, 2**bits - 1]: uniform levels from low to high per unit.

  Values outside [low, high] are clipped first.
  """
  if not 1 <= bits <= 16:
    raise ValueError(f"bits must be in [1, 16], got {bits}.")
  codes = flat(codes).astype(np.float64)
  levels = np.rint((np.clip(codes, low, high) - low) / _step(low, high, bits))
  return levels.astype(np.uint16)


def dequantize(levels: np.ndarray, low: np.ndarray, high: np.ndarray, bits: int) -> np.ndarray:
  """Inverse of ``quantize``: [N, K] integers -> float32 codes; error ≤ step/2 in range."""
  return (low + levels * _step(low, high, bits)).astype(np.float32)


def code_bytes(units: int, bits: int) -> int:
  """Bytes to store one image's code: ``units × bits`` bits, rounded up to whole bytes."""
  return math.ceil(units * bits / 8)


def jpeg_roundtrip(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Encodes each grey image [N, H, W, 1] uint8 as a JPEG with Pillow and decodes it.

  Returns ``(decoded uint8 [N, H, W, 1], file_bytes [N], scan_bytes [N])``:
  ``file_bytes`` is the whole file Pillow writes (headers, quantisation and Huffman
  tables included); ``scan_bytes`` only its entropy-coded scan, what each image
  would cost if the tables were shared by all images.
  """
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 1:
    raise ValueError(f"jpeg_roundtrip needs grey uint8 images [N, H, W, 1], got "
                     f"{images.dtype} {images.shape}.")
  decoded = np.empty_like(images)
  file_bytes = np.empty(len(images), np.int64)
  scan_bytes = np.empty(len(images), np.int64)
  for i, image in enumerate(images):
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0], mode="L").save(buffer, format="JPEG", quality=quality)
    encoded = buffer.getvalue()
    decoded[i, ..., 0] = np.asarray(Image.open(io.BytesIO(encoded)))
    file_bytes[i] = len(encoded)
    scan_bytes[i] = entropy_coded_bytes(encoded)
  return decoded, file_bytes, scan_bytes


def entropy_coded_bytes(jpeg: bytes) -> int:
  """Bytes of a baseline JPEG's scan: after the SOS segment, up to the EOI marker."""
  position = 2  # after SOI
  while position + 4 <= len(jpeg):
    marker = jpeg[position:position + 2]
    length = int.from_bytes(jpeg[position + 2:position + 4], "big")
    if marker == b"\xff\xda":  # start of scan
      return len(jpeg) - 2 - (position + 2 + length)
    position += 2 + length
  raise ValueError("not a baseline JPEG: no start-of-scan marker found.")


# ------------------------------------------------------- data it was not trained on


def inverted(images: np.ndarray) -> np.ndarray:
  """White digits on black become black digits on white: the dtype's maximum − x
  (255 − x of uint8 images, 65535 − x of uint16)."""
  return (np.iinfo(images.dtype).max - images).astype(images.dtype)


def shifted(images: np.ndarray, pixels: int = 4) -> np.ndarray:
  """Moves each image [N, H, W, C] ``pixels`` right and down, filling with 0."""
  out = np.zeros_like(images)
  out[:, pixels:, pixels:] = images[:, :images.shape[1] - pixels, :images.shape[2] - pixels]
  return out


# ---------------------------------------------------------------------- denoising


def corrupt(images: np.ndarray, name: str, level: float, key: jax.Array,
            batch_size: int = 1000) -> np.ndarray:
  """``corruption.make(name, level)`` applied to float images [N, ...], batch by batch.

  Each batch's key is ``fold_in(key, batch index)``, so the result depends only on
  the key, never on what ran before.
  """
  # Eager: a handful of element-wise ops per batch, not worth a compilation per level.
  fn = corruption_lib.make(name, level)
  return np.concatenate([
      np.asarray(fn(jax.random.fold_in(key, i), images[start:start + batch_size]))
      for i, start in enumerate(range(0, len(images), batch_size))])


# ------------------------------------------------------------ code sensitivity


def code_sensitivity(run: Run, images: np.ndarray, sigma: float, key: jax.Array,
                     batch_size: int = 1000) -> dict[str, float]:
  """How far ``run``'s codes move when gaussian noise of standard deviation ``sigma``
  is added to images [N, H, W, C] in [0, 1] (not clipped, so that for small sigma
  E||Δcode||² ≈ sigma² ||J||²_F holds to first order).

  ``displacement``: mean over images of ||code(x + ε) − code(x)||₂;
  ``code_spread``: mean ||code(x) − code(x')|| between each image and another
  (the images rolled by one), the scale codes of different images differ by;
  ``relative``: displacement / code_spread; ``rms_gain``:
  sqrt(mean ||Δcode||²) / sigma, to compare with sqrt(mean ||J||²_F).
  The noise of batch i is drawn from ``fold_in(key, i)``.
  """
  images = np.asarray(images, np.float32)
  noise = np.concatenate([
      np.asarray(jax.random.normal(jax.random.fold_in(key, i),
                                   images[start:start + batch_size].shape))
      for i, start in enumerate(range(0, len(images), batch_size))])
  clean = flat(run.encode(images)).astype(np.float64)
  noisy = flat(run.encode(images + sigma * noise)).astype(np.float64)
  moved = np.linalg.norm(noisy - clean, axis=1)
  spread = float(np.mean(np.linalg.norm(clean - np.roll(clean, 1, axis=0), axis=1)))
  displacement = float(np.mean(moved))
  return {"sigma": float(sigma), "displacement": displacement, "code_spread": spread,
          "relative": displacement / spread if spread > 0 else float("inf"),
          "rms_gain": float(np.sqrt(np.mean(np.square(moved)))) / sigma if sigma else 0.0}
