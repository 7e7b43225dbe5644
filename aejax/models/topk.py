"""The TopK sparse autoencoder (Makhzani & Frey 2014, "k-Sparse Autoencoders"; Gao et
al. 2024, "Scaling and evaluating sparse autoencoders") with Gao's AuxK loss.

For a flattened image x [D]:

    pre  = W_enc (x - b_pre) + b_enc                  [width]
    code = relu of the k largest entries of pre, 0 elsewhere
    out  = W_dec code + b_pre                         [D], W_dec's columns unit norm

so at most k code units are nonzero per example (exactly k when the k largest
pre-activations are positive). ``b_pre`` starts at the training set's mean image
(Gao starts it at the geometric median; the mean is the cheaper stand-in).
``W_dec`` is stored unnormalized and divided by its columns' norms in every forward
pass: the gradient through that division is the raw gradient with the component
along each column removed, which is the projection Gao apply by hand after each
step, and Adam's updates cannot grow a column's norm to shrink its code. ``W_enc``
starts as ``W_dec``'s transpose (Gao §A.1), which with unit columns makes each
pre-activation the projection of the centred image on its unit's decoder direction.

Output (``config.model.output``): 'linear' (default) returns ``out`` clipped to
[0, 1] with a straight-through gradient: its value is the clipped image, its
gradient that of the linear map, so a pixel the linear output overshoots still pulls
its latents back. It keeps the model Gao's (a linear decoder whose residual the AuxK
latents can reconstruct additively). 'sigmoid' returns ``sigmoid(W_dec code +
b_out)`` with ``b_out`` at the mean image's logits, as the article's dense nets; its
AuxK target is the pixel residual, which the AuxK latents fit linearly (a first-order
stand-in). On full MNIST (width 1024, k = 32, 2 epochs, otherwise
``experiments/configs/topk.py``) the linear output reached test MSE 0.0076 and the
sigmoid 0.0103, so 'linear' is the default; we did not compare other k.

Dead latents and AuxK (Gao §A.2): the state collection 'activity' holds, per code
unit, how many training examples have passed since it last fired
(``examples_since_fired`` [width], float32 so that the train step can average it
over a batch's chunks). A unit is dead once that count reaches ``dead_after``
(default 60,000 examples: one pass over MNIST's training set, the window in which
``aejax/code_stats.py`` calls a unit dead). The auxiliary code keeps the ``k_aux``
largest pre-activations among dead units (relu, or as they are with
``auxk_activation='linear'``); its decoding ``W_dec z_aux`` (no bias) is fitted to
the main reconstruction's residual ``e = target - reconstruction`` (held constant;
both sides without ``b_pre``, as Gao's ``x - x̂ + b_pre`` against a decoding with
``b_pre``), so gradients reach exactly the dead units' encoder rows, encoder biases
and decoder columns (and the shared ``b_pre`` through their encoder rows). Terms:
``auxk`` is Gao's normalised MSE (squared error over the residual's batch variance);
``auxk_scaled`` (the config's) first scales the auxiliary decoding by the batch's
least-squares factor, so it is blind to the dead units' overall activation size.

Why the scale-free term and the one-pass window: docs/results/topk.md.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax import losses
from aejax.models import layers, registry

OUTPUTS = ("linear", "sigmoid")
AUXK_ACTIVATIONS = ("relu", "linear")


# ---------------------------------------------------------------- loss terms


def auxk(*, auxk_reconstruction: jax.Array, reconstruction: jax.Array,
         target: jax.Array) -> jax.Array:
  """Gao's AuxK loss per example, normalised as theirs: with the residual
  ``e = stop_gradient(target - reconstruction)`` [B, D],

      auxk_i = |auxk_reconstruction_i - e_i|² / mean_b |e_b - mean_b' e_b'|²

  so that its batch mean is Gao's ``normalized_mse`` (the squared error over the
  residual's variance about its batch mean). Arrays [B, ...] -> [B]. The residual
  and its variance are constants: the term trains the dead units to explain what the
  live ones miss, and does not move the live ones.
  """
  b = auxk_reconstruction.shape[0]
  residual = jax.lax.stop_gradient(target.astype(jnp.float32).reshape(b, -1)
                                   - reconstruction.astype(jnp.float32).reshape(b, -1))
  spread = jnp.mean(jnp.sum(jnp.square(residual - residual.mean(axis=0)), axis=-1))
  diff = auxk_reconstruction.astype(jnp.float32).reshape(b, -1) - residual
  return jnp.sum(jnp.square(diff), axis=-1) / jnp.maximum(spread, 1e-12)


def auxk_scaled(*, auxk_reconstruction: jax.Array, reconstruction: jax.Array,
                target: jax.Array) -> jax.Array:
  """``auxk`` with the auxiliary decoding first scaled by the batch's least-squares
  factor ``c = <a, e> / <a, a>`` (a differentiable function of ``a``): the term is
  invariant to the dead units' overall activation scale, so it aligns their
  directions with the residual without shrinking their pre-activations to its size.
  [B, ...] -> [B]."""
  b = auxk_reconstruction.shape[0]
  residual = jax.lax.stop_gradient(target.astype(jnp.float32).reshape(b, -1)
                                   - reconstruction.astype(jnp.float32).reshape(b, -1))
  spread = jnp.mean(jnp.sum(jnp.square(residual - residual.mean(axis=0)), axis=-1))
  a = auxk_reconstruction.astype(jnp.float32).reshape(b, -1)
  aa = jnp.sum(a * a)
  c = jnp.where(aa > 0, jnp.sum(a * residual) / jnp.where(aa > 0, aa, 1.0), 0.0)
  return jnp.sum(jnp.square(c * a - residual), axis=-1) / jnp.maximum(spread, 1e-12)


losses.register("auxk", auxk, ("auxk_reconstruction", "reconstruction", "target"))
losses.register("auxk_scaled", auxk_scaled,
                ("auxk_reconstruction", "reconstruction", "target"))


# -------------------------------------------------------------------- helpers


def top_k_code(pre: jax.Array, k: int, relu: bool = True) -> jax.Array:
  """relu of the ``k`` largest entries of each row of ``pre``, 0 elsewhere:
  [B, N] -> [B, N]. Exactly the k positions ``lax.top_k`` picks (ties broken by
  index), so at most k entries are nonzero. The gradient reaches those k only."""
  values, indices = jax.lax.top_k(pre, k)
  rows = jnp.arange(pre.shape[0])[:, None]
  if not relu:  # -inf entries (masked units) become 0
    values = jnp.where(jnp.isfinite(values), values, 0.0)
  return jnp.zeros_like(pre).at[rows, indices].set(nn.relu(values) if relu else values)


def top_k_masked(pre: jax.Array, k: int) -> jax.Array:
  """``top_k_code(pre, k)``'s values without a scatter: the entries above the k-th
  largest, and of those equal to it the first by index until k are kept (``lax.top_k``'s
  ties). [B, N] -> [B, N]; for export, not training (the cumulative sum is slower)."""
  kth = jax.lax.top_k(pre, k)[0][:, -1:]
  above, tied = pre > kth, pre == kth
  room = k - jnp.sum(above, axis=-1, keepdims=True)
  keep = above | (tied & (jnp.cumsum(tied.astype(jnp.int32), axis=-1) <= room))
  return jnp.where(keep, nn.relu(pre), 0.0)


def clip_straight_through(x: jax.Array) -> jax.Array:
  """``clip(x, 0, 1)`` in value, identity in gradient. Written as
  ``sg(clip(x)) + (x - sg(x))`` so that the value is exactly the clipped one."""
  return jax.lax.stop_gradient(jnp.clip(x, 0.0, 1.0)) + (x - jax.lax.stop_gradient(x))


def unit_columns(w: jax.Array) -> jax.Array:
  """``w`` [N, D] with each row (a code unit's decoder direction) scaled to norm 1."""
  return w / jnp.linalg.norm(w, axis=-1, keepdims=True)


# -------------------------------------------------------------------- module


class TopKAutoencoder(nn.Module):
  """See the module docstring. ``pixel_mean`` [D] initialises ``b_pre`` (and, for
  the sigmoid output, the output bias at its logits)."""

  image_shape: tuple[int, ...]
  width: int
  k: int
  k_aux: int = 256
  dead_after: int = 60_000
  output: str = "linear"
  auxk_activation: str = "relu"
  pixel_mean: tuple[float, ...] | None = None
  unbounded: bool = False  # data not in [0, 1]: the linear output is not clipped

  def setup(self):
    d = layers.flat_size(self.image_shape)
    mean = (np.zeros(d, np.float32) if self.pixel_mean is None
            else np.asarray(self.pixel_mean, np.float32).reshape(d))
    self.pre_bias = self.param("pre_bias", lambda key, shape: jnp.asarray(mean), (d,))
    # Decoder rows: directions drawn uniformly on the sphere, stored at norm 1. The
    # stored scale sets the effective step size (Adam moves each entry by about the
    # learning rate whatever its size, and the forward pass divides by the norm).
    self.decoder_kernel = self.param(
        "decoder_kernel", lambda key, shape: unit_columns(jax.random.normal(key, shape)),
        (self.width, d))
    decoder_kernel = self.decoder_kernel
    self.encoder_kernel = self.param(
        "encoder_kernel", lambda key, shape: unit_columns(decoder_kernel).T, (d, self.width))
    self.encoder_bias = self.param("encoder_bias", nn.initializers.zeros, (self.width,))
    if self.output == "sigmoid":
      self.output_bias = self.param("output_bias", layers.mean_logit_init(
          None if self.pixel_mean is None else mean.reshape(*self.image_shape), False),
                                    (d,))
    self.examples_since_fired = self.variable(
        "activity", "examples_since_fired", jnp.zeros, (self.width,), jnp.float32)

  def pre_activation(self, x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, width]."""
    flat = x.reshape(x.shape[0], -1).astype(jnp.float32)
    return (flat - self.pre_bias) @ self.encoder_kernel + self.encoder_bias

  def encode(self, x: jax.Array) -> jax.Array:
    """The sparse code: [B, H, W, C] -> [B, width]."""
    return top_k_code(self.pre_activation(x), self.k)

  def encode_masked(self, x: jax.Array) -> jax.Array:
    """``encode``'s code, with a mask where it scatters (``top_k_masked``): what
    ``aejax.export`` converts, as jax2onnx takes no scatter over a symbolic batch."""
    return top_k_masked(self.pre_activation(x), self.k)

  def decode_linear(self, code: jax.Array, bias: bool = True) -> jax.Array:
    """``W_dec code (+ b_pre)``, flat: [B, width] -> [B, D]."""
    out = code @ unit_columns(self.decoder_kernel)
    return out + self.pre_bias if bias and self.output == "linear" else out

  def decode(self, code: jax.Array) -> jax.Array:
    """[B, width] -> [B, H, W, C] in [0, 1]."""
    out = self.decode_linear(code)
    if self.output == "sigmoid":
      image = nn.sigmoid(out + self.output_bias)
    else:
      image = out if self.unbounded else clip_straight_through(out)
    return image.reshape(code.shape[0], *self.image_shape)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    pre = self.pre_activation(x)
    code = top_k_code(pre, self.k)
    dead = self.examples_since_fired.value >= self.dead_after
    k_aux = min(self.k_aux, self.width)
    # Live units enter as -inf: relu makes them 0 when fewer than k_aux units are dead.
    aux_code = top_k_code(jnp.where(dead, pre, -jnp.inf), k_aux,
                          relu=self.auxk_activation == "relu")
    if self.is_mutable_collection("activity") and not self.is_initializing():
      fired = jnp.any(code > 0, axis=0)
      self.examples_since_fired.value = jnp.where(
          fired, 0.0, self.examples_since_fired.value + x.shape[0])
    return {
        "reconstruction": self.decode(code),
        "code": code,
        "pre_activation": pre,
        "auxk_reconstruction": self.decode_linear(aux_code, bias=False).reshape(x.shape),
    }


# ------------------------------------------------------------------- family


def build(config, image_shape, pixel_mean, unbounded: bool = False) -> TopKAutoencoder:
  if unbounded and config.output == "sigmoid":
    raise ValueError("config.model.output='sigmoid' gives values in [0, 1]; this data is "
                     "not in [0, 1]: use config.model.output='linear'.")
  mean = None if pixel_mean is None else tuple(float(v) for v in np.ravel(pixel_mean))
  return TopKAutoencoder(image_shape=tuple(image_shape), width=config.width, k=config.k,
                         k_aux=config.k_aux, dead_after=config.dead_after,
                         output=config.output, auxk_activation=config.auxk_activation,
                         pixel_mean=mean, unbounded=unbounded)


def check(config, image_shape) -> None:
  for key in ("width", "k", "k_aux", "dead_after"):
    layers.check_positive_ints(config, key)
  if config.k > config.width:
    raise ValueError(f"config.model.k={config.k} is larger than config.model.width="
                     f"{config.width}; choose k ≤ width.")
  layers.check_choice(config, "output", OUTPUTS)
  layers.check_choice(config, "auxk_activation", AUXK_ACTIVATIONS)


registry.register(registry.Family(
    name="topk",
    defaults=dict(width=1024, k=32, k_aux=256, dead_after=60_000, output="linear",
                  auxk_activation="relu"),
    build=build, check=check, state_collections=("activity",), vectors=True,
    linear_head=True, export=registry.Export(traced={"encode": "encode_masked"})))
