"""A learned image codec: Ballé, Laparra & Simoncelli 2017 ("End-to-end optimized
image compression"), the factorized-prior model, and with ``prior='hyperprior'``
Ballé, Minnen, Singh, Hwang & Johnston 2018's scale hyperprior (below).

Analysis transform (per entry ``f`` of ``features``: Conv k×k stride 2 to ``f``
channels, then GDN), then a k×k conv to ``latent_channels`` (k = ``kernel_size``,
Ballé's 5 by default): [B, 28, 28, 1] ->
y [B, 7, 7, M] for two features. Synthesis mirrors it with transposed convs and
inverse GDN, sigmoid at the end. While training the latents are ``y + u``, u uniform
on [-½, ½) (the rng stream 'quantization'), so that the rate is differentiable; the
codec itself rounds: ``encode(x) = round(y)``, ``decode(ŷ)`` the image. With
``quantization='mixed'`` (Minnen & Singh 2020) the synthesis sees ``round(y)``
(straight-through gradient) while the density still sees ``y + u``, so the decoder
trains on what it will decode.

The density is Ballé et al. 2018's non-parametric factorized one (their appendix
6.1): per channel, a cumulative ``c(x) = sigmoid(f_K ∘ … ∘ f_1(x))`` with
``f_k(x) = g_k(H_k x + b_k)``, ``g_k(x) = x + tanh(a_k) ⊙ tanh(x)``, ``H_k``
kept positive by a softplus, so c is monotone by construction; its filters are
``density_filters``. The probability of a latent value is the mass of its unit bin,
``p(ỹ) = c(ỹ + ½) - c(ỹ - ½)`` (computed on the side of the median where the
sigmoid does not saturate), and an image costs ``rate_bits = Σ -log2 p`` over its
latents. The loss term ``rate`` reads that; the config's ``sse=1, rate=λ`` is
``D + λ R`` with λ in squared error per bit.

The rate is the relaxed one in training and in the objective's test terms (the
test set seen through the noise, as the model trained); the family's ``evaluate``
gives the codec's own figures on the rounded latents: the estimated rate, the bytes
the range coder actually writes (``aejax.entropy_coding``), and PSNR.

**The scale hyperprior** (``prior='hyperprior'``, ``ScaleHyperprior``): the same
transforms, and each latent of y a zero-mean Gaussian whose scale the hyper-latents
z carry:

    z = h_a(|y|)   [B, h', w', K]  3×3 conv to ``hyper_features``, ReLU, k×k stride 2
                                   to K = ``hyper_channels`` (h' = ⌈h/2⌉: 7×7 -> 4×4)
    σ = h_s(ẑ)     [B, h, w, M]    k×k transposed stride 2 to ``hyper_features`` (4×4
                                   -> 8×8, cropped to y's 7×7), ReLU, 3×3 conv to M,
                                   then ``SCALE_MIN + softplus``

ẑ has the density above, one per channel of z (Ballé's "entropy bottleneck"); ŷ
given σ a Gaussian convolved with a unit uniform, ``p(ŷ | σ) = Φ((ŷ + ½)/σ) -
Φ((ŷ - ½)/σ)``, and ``rate_bits = bits(ŷ | σ) + bits(ẑ)``. Both densities see the
latents plus uniform noise in training; with ``'mixed'`` quantization h_s, like the
synthesis, sees ``round(z)`` (straight-through), so the σ of training is the σ the
decoder computes. The codec writes ẑ with its density's integer tables, then each
latent of ŷ with the Gaussian table of the scale nearest its σ (in log) of a fixed
list (``entropy_coding.ScaleTables``; ``SCALE_MIN`` is the first).
``hyper_features`` and ``hyper_channels`` are read only with this prior.

Output dict: ``reconstruction``, ``code`` (the latents the synthesis saw),
``latent`` y, ``rate_bits`` [B].
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax import entropy_coding, losses
from aejax.images import psnr_db, to_float
from aejax.models import coding, layers, registry

QUANTIZATIONS = ("noise", "mixed")
PRIORS = ("factorized", "hyperprior")
LIKELIHOOD_FLOOR = 1e-9  # a bin's probability is at least this (≈ 30 bits), as CompressAI


def rate(*, rate_bits: jax.Array) -> jax.Array:
  """Bits per example under the model's density: [B] -> [B]."""
  return rate_bits.astype(jnp.float32)


losses.register("rate", rate, ("rate_bits",))


# --------------------------------------------------------------------- GDN


def nonnegative(raw: jax.Array, floor: float = 0.0) -> jax.Array:
  """``floor + raw²``: GDN's β and γ stay ≥ floor whatever Adam does to ``raw``."""
  return floor + jnp.square(raw)


class GDN(nn.Module):
  """Generalized divisive normalization over the channel axis (Ballé et al. 2016):
  ``y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)``; ``inverse`` multiplies instead (IGDN).
  [..., C] -> [..., C]. Starts at β = 1, γ = 0.1 I (CompressAI's start)."""

  inverse: bool = False
  beta_min: float = 1e-6
  gamma_init: float = 0.1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    beta = nonnegative(self.param(
        "beta", lambda k, s: jnp.full(s, math.sqrt(1.0 - self.beta_min), jnp.float32), (c,)),
        self.beta_min)
    gamma = nonnegative(self.param(
        "gamma", lambda k, s: math.sqrt(self.gamma_init) * jnp.eye(s[0]), (c, c)))
    norm = jnp.sqrt(beta + jnp.square(x) @ gamma.T)
    return x * norm if self.inverse else x / norm


# ----------------------------------------------------------------- density


class FactorizedDensity(nn.Module):
  """Ballé et al. 2018's non-parametric density, one per channel. ``logits(v)`` for
  values ``v`` [C, N] gives ``logit(c_channel(v))`` [C, N]. Initialised as theirs
  (CompressAI's ``EntropyBottleneck``: init scale 10, biases uniform in [-½, ½])."""

  channels: int
  filters: Sequence[int] = (3, 3, 3)
  init_scale: float = 10.0

  def setup(self):
    dims = (1, *self.filters, 1)
    scale = self.init_scale ** (1 / (len(dims) - 1))
    self.matrices = [self.param(
        f"matrix_{k}", lambda key, s, v=float(np.log(np.expm1(1 / scale / dims[k + 1]))):
        jnp.full(s, v, jnp.float32), (self.channels, dims[k + 1], dims[k]))
        for k in range(len(dims) - 1)]
    self.biases = [self.param(
        f"bias_{k}", lambda key, s: jax.random.uniform(key, s, jnp.float32, -0.5, 0.5),
        (self.channels, dims[k + 1], 1)) for k in range(len(dims) - 1)]
    self.factors = [self.param(f"factor_{k}", nn.initializers.zeros,
                               (self.channels, dims[k + 1], 1)) for k in range(len(dims) - 2)]

  def logits(self, values: jax.Array) -> jax.Array:
    x = values[:, None, :].astype(jnp.float32)  # [C, 1, N]
    for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
      x = jnp.matmul(nn.softplus(matrix), x) + bias
      if k < len(self.factors):
        x = x + jnp.tanh(self.factors[k]) * jnp.tanh(x)
    return x[:, 0, :]

  def bin_probability(self, values: jax.Array) -> jax.Array:
    """``c(v + ½) - c(v - ½)`` for ``v`` [C, N] -> [C, N]. Both sigmoids are taken
    on the side where they are small (``sign``), so a bin far in a tail keeps its
    few bits instead of the float difference of two numbers near 1."""
    lower, upper = self.logits(values - 0.5), self.logits(values + 0.5)
    sign = -jnp.sign(lower + upper)
    sign = jnp.where(sign == 0, 1.0, sign)
    return jnp.abs(nn.sigmoid(sign * upper) - nn.sigmoid(sign * lower))

  def __call__(self, values: jax.Array) -> jax.Array:
    return self.bin_probability(values)


def bits(density: FactorizedDensity, latents: jax.Array) -> jax.Array:
  """``Σ -log2 p`` over each example's latents [B, h, w, C] -> [B]."""
  b, c = latents.shape[0], latents.shape[-1]
  per_channel = jnp.moveaxis(latents, -1, 0).reshape(c, -1)  # [C, B·h·w]
  p = jnp.maximum(density(per_channel), LIKELIHOOD_FLOOR)
  return -jnp.sum(jnp.log2(p).reshape(c, b, -1), axis=(0, 2))


# ------------------------------------------------------------------ module


class FactorizedPrior(nn.Module):
  """See the module docstring."""

  features: Sequence[int]
  latent_channels: int
  channels: int
  density_filters: Sequence[int] = (3, 3, 3)
  density_init_scale: float = 10.0
  quantization: str = "noise"
  kernel_size: int = 5
  kernel_init: nn.initializers.Initializer = nn.initializers.he_uniform()
  output_bias_init: nn.initializers.Initializer = nn.initializers.zeros

  def setup(self):
    self.make_transforms()
    self.density = FactorizedDensity(self.latent_channels, tuple(self.density_filters),
                                     self.density_init_scale)

  def make_transforms(self):
    """The analysis and synthesis layers (called from ``setup``, here and in the scale
    hyperprior)."""
    kernel = (self.kernel_size, self.kernel_size)
    conv = lambda f, stride: nn.Conv(f, kernel, strides=(stride, stride), padding="SAME",
                                     kernel_init=self.kernel_init)
    self.analysis_convs = [conv(f, 2) for f in self.features] + [conv(self.latent_channels, 1)]
    self.analysis_gdns = [GDN() for _ in self.features]
    up = lambda f, stride, **kw: nn.ConvTranspose(
        f, kernel, strides=(stride, stride), padding="SAME", kernel_init=self.kernel_init, **kw)
    reverse = tuple(self.features)[::-1]
    self.synthesis_convs = [up(f, 1 if i == 0 else 2) for i, f in enumerate(reverse)] + [
        up(self.channels, 2, bias_init=self.output_bias_init)]
    self.synthesis_gdns = [GDN(inverse=True) for _ in self.features]

  def analysis(self, x: jax.Array) -> jax.Array:
    """y: [B, H, W, C] -> [B, h, w, M] float."""
    for conv, gdn in zip(self.analysis_convs, self.analysis_gdns):
      x = gdn(conv(x))
    return self.analysis_convs[-1](x)

  def encode(self, x: jax.Array) -> jax.Array:
    """The codec's latents, ``round(y)``: [B, H, W, C] -> [B, h, w, M] (integers in
    float32)."""
    return jnp.round(self.analysis(x))

  def decode(self, code: jax.Array) -> jax.Array:
    """[B, h, w, M] -> [B, H, W, C] in [0, 1]."""
    x = code
    for conv, gdn in zip(self.synthesis_convs, self.synthesis_gdns):
      x = gdn(conv(x))
    return nn.sigmoid(self.synthesis_convs[-1](x))

  def cdf_logits(self, values: jax.Array) -> jax.Array:
    """``logit(c(v))`` per channel: [M, N] -> [M, N] (for the coder's tables)."""
    return self.density.logits(values)

  def latent_bits(self, code: jax.Array) -> jax.Array:
    """The density's bits for rounded latents [B, h, w, M] -> [B]."""
    return bits(self.density, code)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    y = self.analysis(x)
    noisy = y + jax.random.uniform(self.make_rng("quantization"), y.shape, y.dtype, -0.5, 0.5)
    code = noisy if self.quantization == "noise" else y + jax.lax.stop_gradient(
        jnp.round(y) - y)
    return {"reconstruction": self.decode(code), "code": code, "latent": y,
            "rate_bits": bits(self.density, noisy)}


# --------------------------------------------------------- scale hyperprior

SCALE_MIN = float(entropy_coding.log_scales()[0])  # σ ≥ the scale table's first entry


def gaussian_bin_probability(values: jax.Array, scales: jax.Array) -> jax.Array:
  """``Φ((v + ½)/σ) - Φ((v - ½)/σ)`` of a zero-mean Gaussian, elementwise. Taken at
  ``-|v|``, the same mass by symmetry, where both Φ are small and their difference
  keeps its bits (as CompressAI's ``GaussianConditional``)."""
  phi = lambda t: 0.5 * jax.scipy.special.erfc(-t / math.sqrt(2.0))
  v = -jnp.abs(values)
  return phi((v + 0.5) / scales) - phi((v - 0.5) / scales)


def gaussian_bits(values: jax.Array, scales: jax.Array) -> jax.Array:
  """``Σ -log2 p(v | σ)`` over each example's latents [B, ...] -> [B]."""
  p = jnp.maximum(gaussian_bin_probability(values, scales), LIKELIHOOD_FLOOR)
  return -jnp.sum(jnp.log2(p), axis=tuple(range(1, values.ndim)))


class ScaleHyperprior(FactorizedPrior):
  """See the module docstring. ``density`` is ẑ's here, and ``latent_bits`` takes ẑ
  as well as ŷ."""

  latent_grid: tuple[int, int] = (7, 7)  # y's h, w: h_s crops its output to them
  hyper_features: int = 32
  hyper_channels: int = 8

  def setup(self):
    self.make_transforms()
    self.density = FactorizedDensity(
        self.hyper_channels, tuple(self.density_filters), self.density_init_scale)
    kernel, stride = (self.kernel_size, self.kernel_size), (2, 2)
    init = dict(kernel_init=self.kernel_init)
    self.hyper_analysis_convs = [
        nn.Conv(self.hyper_features, (3, 3), **init),
        nn.Conv(self.hyper_channels, kernel, strides=stride, padding="SAME", **init)]
    self.hyper_synthesis_convs = [
        nn.ConvTranspose(self.hyper_features, kernel, strides=stride, padding="SAME", **init),
        nn.Conv(self.latent_channels, (3, 3), **init)]

  def hyper_analysis(self, y: jax.Array) -> jax.Array:
    """z: [B, h, w, M] -> [B, ⌈h/2⌉, ⌈w/2⌉, K] float."""
    first, second = self.hyper_analysis_convs
    return second(nn.relu(first(jnp.abs(y))))

  def side(self, x: jax.Array) -> jax.Array:
    """The side information ``round(h_a(|y|))``: images [B, H, W, C] -> [B, h', w', K]
    (integers in float32)."""
    return jnp.round(self.hyper_analysis(self.analysis(x)))

  def scales(self, side: jax.Array) -> jax.Array:
    """σ of each latent of y: [B, h', w', K] -> [B, h, w, M], ≥ ``SCALE_MIN``."""
    first, second = self.hyper_synthesis_convs
    h, w = self.latent_grid
    s = second(nn.relu(first(side)[:, :h, :w]))
    return SCALE_MIN + nn.softplus(s)

  def side_bits(self, side: jax.Array) -> jax.Array:
    """ẑ's bits under its density: [B, h', w', K] -> [B]."""
    return bits(self.density, side)

  def latent_bits(self, code: jax.Array, side: jax.Array) -> jax.Array:
    """The model's bits for rounded latents ŷ [B, h, w, M] and ẑ: [B]."""
    return gaussian_bits(code, self.scales(side)) + self.side_bits(side)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    y = self.analysis(x)
    z = self.hyper_analysis(y)
    noise = lambda v: v + jax.random.uniform(self.make_rng("quantization"), v.shape, v.dtype,
                                             -0.5, 0.5)
    noisy_y, noisy_z = noise(y), noise(z)
    if self.quantization == "noise":
      code, side = noisy_y, noisy_z
    else:
      code, side = (v + jax.lax.stop_gradient(jnp.round(v) - v) for v in (y, z))
    rate_bits = gaussian_bits(noisy_y, self.scales(side)) + self.side_bits(noisy_z)
    return {"reconstruction": self.decode(code), "code": code, "latent": y,
            "rate_bits": rate_bits}


# -------------------------------------------------------------- evaluation


def evaluate(model: FactorizedPrior, variables, dataset, key: jax.Array) -> dict:
  """The codec on the test set, rounded latents (``coding.Codec``, tables made from
  this model): ``estimated_bits_per_image`` (the model's densities'),
  ``table_bits_per_image`` (the ideal code length under the integer tables),
  ``bytes_per_image`` (the range coder's real byte strings), ``psnr_db`` and ``mse``
  of the decoded images; a hyperprior's also ``side_bits_per_image`` (ẑ's share of
  the estimate)."""
  del key
  images = dataset.test_images
  codec = coding.Codec.of(coding.Bound(model, variables), images.shape[1:])
  latents = codec.latents(images)
  sizes = [len(s) for s in codec.encode_latents(latents)]
  mse = float(np.mean(np.square(codec.reconstruct(latents) - to_float(images),
                                dtype=np.float64)))
  figures = {"bytes_per_image": float(np.mean(sizes)),
             "estimated_bits_per_image": float(np.mean(codec.estimated_bits(latents))),
             "table_bits_per_image": float(np.mean(codec.table_bits(latents))), "mse": mse,
             "psnr_db": psnr_db(mse), "latent_shape": list(codec.latent_shape)}
  if codec.side_shape is not None:
    figures |= {"side_bits_per_image": float(np.mean(codec.side_bits(latents))),
                "side_shape": list(codec.side_shape)}
  return figures


# ------------------------------------------------------------------- family


def build(config, image_shape, pixel_mean) -> FactorizedPrior:
  fields = dict(
      features=tuple(config.features), latent_channels=config.latent_channels,
      channels=image_shape[-1], density_filters=tuple(config.density_filters),
      density_init_scale=config.density_init_scale,
      quantization=config.quantization, kernel_size=config.kernel_size,
      kernel_init=layers.INITIALIZERS[config.init](),
      output_bias_init=layers.output_bias_init(config, pixel_mean, True))
  if config.prior == "factorized":
    return FactorizedPrior(**fields)
  halvings = 2 ** len(config.features)
  return ScaleHyperprior(
      **fields, latent_grid=(image_shape[0] // halvings, image_shape[1] // halvings),
      hyper_features=config.hyper_features, hyper_channels=config.hyper_channels)


def check(config, image_shape) -> None:
  layers.check_choice(config, "prior", PRIORS)
  layers.check_positive_ints(config, "features", allow_empty=False)
  layers.check_positive_ints(config, "latent_channels")
  layers.check_positive_ints(config, "kernel_size")
  layers.check_positive_ints(config, "density_filters")
  layers.check_positive_ints(config, "hyper_features")
  layers.check_positive_ints(config, "hyper_channels")
  layers.check_choice(config, "quantization", QUANTIZATIONS)
  if not config.density_init_scale > 0:
    raise ValueError(f"config.model.density_init_scale must be > 0, got "
                     f"{config.density_init_scale!r}.")
  layers.check_choice(config, "init", layers.INITIALIZERS)
  layers.check_choice(config, "output_bias", layers.OUTPUT_BIAS)
  layers.check_halvings(image_shape, len(config.features),
                        "The codec's analysis transform halves the image")


registry.register(registry.Family(
    name="factorized_prior",
    defaults=dict(prior="factorized", hyper_features=32, hyper_channels=8,
                  features=(32, 32), latent_channels=16, density_filters=(3, 3, 3),
                  density_init_scale=10.0, quantization="noise", kernel_size=5, init="he_uniform", output_bias="data_mean"),
    build=build, check=check, cpu_epoch_mode="step", cpu_vmap_members=False,
    rng_streams=("quantization",),
    evaluate=evaluate,
    # The transforms, not the coding (it stays in aejax): the encoder gives y before
    # rounding, since a rounding in another runtime may land a latent at x.5 on the
    # other side; round(y) is the code the decoder takes.
    export=registry.Export(encoder="analysis", autoencoder=False)))
