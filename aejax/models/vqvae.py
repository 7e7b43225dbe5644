"""The VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017) with an EMA codebook.

Encoder: (Conv 4×4 stride 2, relu) per entry of ``features``, then a 1×1 conv to
``embedding_dim``: [B, 28, 28, 1] -> z_e [B, 7, 7, D] for ``features=(32, 64)``. Each
of the grid's vectors is replaced by its nearest (Euclidean) entry of a codebook of
``num_embeddings`` (K) vectors; the decoder (a 3×3 relu conv, then one 4×4 stride-2
transposed conv per entry of ``features``, reversed, the last to the image's
channels, sigmoid) sees only those entries. An image is thus ``positions × log2 K``
bits: 49 × 9 = 441 for a 7×7 grid and K = 512.

Gradients pass the quantizer straight through: the decoder's input is
``z_q + (z_e - stop_gradient(z_e))``, exactly ``z_q`` in value (so the
reconstruction is a function of the indices alone) and the identity in gradient.
The encoder is also pulled towards its entries by the commitment term
``||z_e - sg(z_q)||²`` (registered as ``commitment``; the paper's β = 0.25 is its
weight in the config).

The codebook is not a parameter but the state collection 'codebook', updated by
exponential moving averages (the paper's appendix; Sonnet's ``VectorQuantizerEMA``)
while training: per entry, ``cluster_size ← γ cluster_size + (1 - γ) n`` and
``embed_sum ← γ embed_sum + (1 - γ) Σ z_e`` over the batch's vectors assigned to it,
``embedding = embed_sum / cluster_size``, with ``γ = decay`` (0.99). An entry whose
``cluster_size`` falls below ``dead_threshold`` (unused for long, or never: every
entry starts at 0) is reset to a batch vector drawn at random from the rng stream
'codebook_reset', with ``cluster_size = 1``. Every entry starts at 0, so after the
first training step each entry is either the mean of the batch vectors it drew or
one of those vectors: the codebook is seeded from the data. Evaluation reads the
codebook frozen.

The reset draws per call: the config trains each batch in one chunk
(``microbatch_size = batch_size``) so that the step does not average different
chunks' resets into one blurred vector.

Output dict of ``apply`` for ``x`` [B, H, W, C] (grid [h, w] = H, W / 2^len(features)):
- ``reconstruction`` [B, H, W, C]; ``code`` [B, h, w, D]: the quantized vectors, so
  that ``decode(code) == reconstruction``;
- ``encoding`` [B, h, w, D]: z_e; ``quantized`` [B, h, w, D]: z_q;
- ``indices`` int32 [B, h, w]; ``perplexity`` [B]: ``exp(entropy)`` of the batch's
  code usage (the same value for every example: a property of the batch).

Config block (``config.model``): ``features``, ``embedding_dim``,
``num_embeddings``, ``decay``, ``dead_threshold``, ``init``, ``output_bias``,
``compute_dtype``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax import losses
from aejax.images import to_float
from aejax.models import layers, registry


def commitment(*, encoding: jax.Array, quantized: jax.Array) -> jax.Array:
  """``mean((z_e - stop_gradient(z_q))²)`` over each example's grid and dims:
  [B, ...] x2 -> [B]. Its gradient reaches the encoder only."""
  diff = encoding.astype(jnp.float32) - jax.lax.stop_gradient(quantized.astype(jnp.float32))
  return jnp.mean(jnp.square(diff.reshape(diff.shape[0], -1)), axis=-1)


losses.register("commitment", commitment, ("encoding", "quantized"))


def nearest(vectors: jax.Array, embedding: jax.Array) -> jax.Array:
  """Index of the nearest codebook entry: [N, D], [K, D] -> int32 [N]."""
  distances = (jnp.sum(jnp.square(vectors), -1, keepdims=True) - 2 * vectors @ embedding.T
               + jnp.sum(jnp.square(embedding), -1))
  return jnp.argmin(distances, axis=-1).astype(jnp.int32)


def perplexity(indices: jax.Array, num_embeddings: int) -> jax.Array:
  """``exp(-Σ p log p)`` of the codes' frequencies in ``indices`` (any shape): a
  scalar between 1 (one code) and K (all used equally)."""
  p = jnp.bincount(indices.reshape(-1), length=num_embeddings) / indices.size
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


class EMAQuantizer(nn.Module):
  """Nearest-entry quantization with an EMA-updated codebook (state 'codebook')."""

  num_embeddings: int
  embedding_dim: int
  decay: float = 0.99
  dead_threshold: float = 0.01

  def setup(self):
    k, d = self.num_embeddings, self.embedding_dim
    self.embedding = self.variable(
        "codebook", "embedding",
        lambda: jax.random.uniform(self.make_rng("params"), (k, d), jnp.float32, -1, 1))
    self.cluster_size = self.variable("codebook", "cluster_size", jnp.zeros, (k,), jnp.float32)
    self.embed_sum = self.variable("codebook", "embed_sum", jnp.zeros, (k, d), jnp.float32)

  def lookup(self, indices: jax.Array) -> jax.Array:
    """Codebook entries: int [...] -> [..., D]."""
    return self.embedding.value[indices]

  def __call__(self, z_e: jax.Array) -> tuple[jax.Array, jax.Array]:
    """z_e [..., D] -> (indices int32 [...], z_q [..., D]) from the current codebook;
    while training, then updates the codebook from this batch."""
    flat = z_e.reshape(-1, self.embedding_dim).astype(jnp.float32)
    indices = nearest(flat, self.embedding.value)
    z_q = self.embedding.value[indices]
    if self.is_mutable_collection("codebook") and not self.is_initializing():
      self._update(jax.lax.stop_gradient(flat), indices)
    return indices.reshape(z_e.shape[:-1]), z_q.reshape(z_e.shape)

  def _update(self, flat: jax.Array, indices: jax.Array) -> None:
    one_hot = jax.nn.one_hot(indices, self.num_embeddings, dtype=jnp.float32)  # [N, K]
    size = self.decay * self.cluster_size.value + (1 - self.decay) * one_hot.sum(0)
    total = self.decay * self.embed_sum.value + (1 - self.decay) * (one_hot.T @ flat)
    embedding = jnp.where(size[:, None] > 0, total / jnp.where(size > 0, size, 1.0)[:, None],
                          self.embedding.value)
    dead = size < self.dead_threshold
    draws = jax.random.randint(self.make_rng("codebook_reset"), (self.num_embeddings,), 0,
                               len(flat))
    fresh = flat[draws]
    self.embedding.value = jnp.where(dead[:, None], fresh, embedding)
    self.embed_sum.value = jnp.where(dead[:, None], fresh, total)
    self.cluster_size.value = jnp.where(dead, 1.0, size)


class VQEncoder(nn.Module):
  """(Conv 4×4 stride 2, relu) per feature, then 1×1 to D: [B,H,W,C] -> [B,h,w,D]."""

  features: Sequence[int]
  embedding_dim: int
  kernel_init: Callable = nn.initializers.he_uniform()
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for f in self.features:
      x = nn.relu(nn.Conv(f, (4, 4), strides=(2, 2), padding="SAME",
                          kernel_init=self.kernel_init, dtype=self.dtype)(x))
    x = nn.Conv(self.embedding_dim, (1, 1), kernel_init=self.kernel_init, dtype=self.dtype)(x)
    return x.astype(jnp.float32)


class VQDecoder(nn.Module):
  """3×3 relu conv, then a 4×4 stride-2 transposed conv per feature (reversed
  order of the encoder's), the last one to the image's channels, sigmoid."""

  features: Sequence[int]
  channels: int
  kernel_init: Callable = nn.initializers.he_uniform()
  output_bias_init: Callable = nn.initializers.zeros
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, code: jax.Array) -> jax.Array:
    x = nn.relu(nn.Conv(self.features[0], (3, 3), padding="SAME",
                        kernel_init=self.kernel_init, dtype=self.dtype)(code))
    outs = (*self.features[1:], self.channels)
    for i, f in enumerate(outs):
      last = i == len(outs) - 1
      x = nn.ConvTranspose(f, (4, 4), strides=(2, 2), padding="SAME",
                           kernel_init=self.kernel_init, dtype=self.dtype,
                           bias_init=self.output_bias_init if last else nn.initializers.zeros)(x)
      x = x if last else nn.relu(x)
    return nn.sigmoid(x.astype(jnp.float32))


class VQVAE(nn.Module):
  """See the module docstring."""

  encoder: VQEncoder
  quantizer: EMAQuantizer
  decoder: VQDecoder

  def encode(self, x: jax.Array) -> jax.Array:
    """The quantized grid: [B, H, W, C] -> [B, h, w, D]."""
    return self.quantizer(self.encoder(x))[1]

  def encode_indices(self, x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> int32 [B, h, w]."""
    return self.quantizer(self.encoder(x))[0]

  def decode(self, code: jax.Array) -> jax.Array:
    """[B, h, w, D] -> [B, H, W, C] in [0, 1]."""
    return self.decoder(code)

  def decode_indices(self, indices: jax.Array) -> jax.Array:
    """int [B, h, w] -> [B, H, W, C]: the decoding of those codebook entries."""
    return self.decoder(self.quantizer.lookup(indices))

  def quantize_and_decode(self, encoding: jax.Array) -> jax.Array:
    """An encoder output z_e [B, h, w, D] -> its reconstruction (frozen codebook)."""
    return self.decoder(self.quantizer(encoding)[1])

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    z_e = self.encoder(x)
    indices, z_q = self.quantizer(z_e)
    code = z_q + (z_e - jax.lax.stop_gradient(z_e))  # z_q in value, identity in gradient
    batch_perplexity = perplexity(indices, self.quantizer.num_embeddings)
    return {
        "reconstruction": self.decoder(code),
        "code": code,
        "encoding": z_e,
        "quantized": z_q,
        "indices": indices,
        "perplexity": jnp.broadcast_to(batch_perplexity, (x.shape[0],)),
    }


# ----------------------------------------------------------------- evaluation

EVAL_CHUNK = 1000


def evaluate(model: VQVAE, variables, dataset, key: jax.Array) -> dict:
  """Test-set codebook figures for results.json: ``bits_per_image`` (positions ×
  log2 K), ``codebook_perplexity`` (of the test set's code usage), ``codes_used``."""
  del key
  fn = registry.compiled_apply(model, "encode_indices")
  images = dataset.test_images
  indices = np.concatenate([
      np.asarray(fn(variables, to_float(jnp.asarray(images[i:i + EVAL_CHUNK]))))
      for i in range(0, len(images), EVAL_CHUNK)])
  k = model.quantizer.num_embeddings
  positions = int(np.prod(indices.shape[1:]))
  return {"bits_per_image": positions * math.log2(k), "positions": positions,
          "num_embeddings": k,
          "codebook_perplexity": float(perplexity(jnp.asarray(indices), k)),
          "codes_used": int(len(np.unique(indices)))}


# ------------------------------------------------------------------- family


def build(config, image_shape, pixel_mean) -> VQVAE:
  init = layers.INITIALIZERS[config.init]()
  dtype = layers.compute_dtype(config)
  features = tuple(config.features)
  return VQVAE(
      encoder=VQEncoder(features=features, embedding_dim=config.embedding_dim,
                        kernel_init=init, dtype=dtype),
      quantizer=EMAQuantizer(num_embeddings=config.num_embeddings,
                             embedding_dim=config.embedding_dim, decay=config.decay,
                             dead_threshold=config.dead_threshold),
      decoder=VQDecoder(features=features[::-1], channels=image_shape[-1], kernel_init=init,
                        output_bias_init=layers.output_bias_init(config, pixel_mean, True),
                        dtype=dtype))


def check(config, image_shape) -> None:
  layers.check_common(config)
  layers.check_positive_ints(config, "features", allow_empty=False)
  for key in ("embedding_dim", "num_embeddings"):
    layers.check_positive_ints(config, key)
  if not 0 <= config.decay < 1:
    raise ValueError(f"config.model.decay must lie in [0, 1), got {config.decay!r}.")
  if not config.dead_threshold >= 0:
    raise ValueError(f"config.model.dead_threshold must be ≥ 0, got {config.dead_threshold!r}.")
  layers.check_halvings(image_shape, len(config.features),
                        "The VQ-VAE's encoder halves the image")


registry.register(registry.Family(
    name="vqvae",
    defaults=dict(features=(32, 64), embedding_dim=16, num_embeddings=512, decay=0.99,
                  dead_threshold=0.01, init="he_uniform", output_bias="data_mean",
                  compute_dtype="float32"),
    build=build, check=check, cpu_epoch_mode="step", cpu_vmap_members=False,
    rng_streams=("codebook_reset",),
    state_collections=("codebook",), evaluate=evaluate))
