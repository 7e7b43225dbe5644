"""Variational autoencoders (Kingma & Welling 2014) and their importance-weighted
bound (IWAE, Burda, Grosse & Salakhutdinov 2016) on dynamically binarized images.

Gaussian encoder q(z|x) = N(mean, diag(exp(logvar))) from an MLP; Bernoulli
decoder p(x|z) with per-pixel logits from an MLP; prior p(z) = N(0, I).
``hidden=(200, 200), latent_size=50, activation='tanh'`` is Burda et al.'s
one-stochastic-layer net (784-200-200-50).

Dynamic binarization lives in the model: each call draws a binary image from the
grey levels (pixel on with probability = grey level) from the rng stream
'binarize' and returns it as ``binary_target``, so every epoch sees a fresh draw
without any change to the train step. The test figures (``evaluate``) use one
fixed binarization of the test set, drawn from ``eval_binarization_seed`` whatever
the run's seed, so that runs are compared on the same binary images.

Output dict of ``apply`` for images ``x`` [B, H, W, C] in [0, 1] (K =
``num_samples``, L = ``latent_size``):
- ``reconstruction`` [B, H, W, C]: Bernoulli means decoded from the posterior mean;
- ``code``, ``mean``, ``logvar`` [B, L] (``code`` is the posterior mean);
- ``latent_sample`` [B, K, L]: reparameterised draws from q(z|x) (stream 'sample');
- ``logits`` [B, K, H, W, C]: the decoder's logits for each draw;
- ``binary_target`` [B, H, W, C]: the binarized input (``x`` itself with
  ``binarize=False``, a Bernoulli likelihood of grey levels).

Loss terms (registered here, per example, in nats):
- ``bernoulli_nll``: -log p(x|z) summed over pixels, averaged over the K draws;
- ``kl_normal``: KL(q(z|x) || N(0, I)), analytic;
- ``iwae``: -log (1/K) sum_k p(x, z_k) / q(z_k|x), the negative K-sample
  importance-weighted bound; for K = 1 its expectation is the negative ELBO.
``losses='bernoulli_nll=1, kl_normal=1'`` is the VAE (a KL weight β ≠ 1 gives a
β-VAE); ``losses='iwae=1'`` with ``num_samples=k`` the IWAE.

Config block (``config.model``): ``hidden``, ``latent_size``, ``activation``,
``num_samples``, ``binarize``, ``eval_nll_samples`` (importance samples per test
image for the NLL), ``eval_binarization_seed``, ``init``, ``output_bias``,
``compute_dtype``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aejax import losses
from aejax.images import to_float
from aejax.models import layers, registry

_LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------- log densities


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array, event_ndim: int) -> jax.Array:
  """log p(x | logits) summed over the last ``event_ndim`` axes (the pixels).

  ``x log σ(l) + (1 - x) log(1 - σ(l)) = x l - softplus(l)``: exact for any logit,
  where the log of a sigmoid output would lose everything beyond about ±17.
  softplus is written out as ``max(l, 0) + log1p(exp(-|l|))``: on XLA:CPU this ran
  the 5,000-sample NLL about twice as fast as ``jnp.logaddexp(0, l)`` or
  ``jax.nn.softplus`` (the output layer's logits dominate it).
  """
  softplus = jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  per_pixel = x * logits - softplus
  return per_pixel.sum(axis=tuple(range(-event_ndim, 0)))


def normal_log_density(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, diag(exp(logvar))), summed over the last axis: [..., L] -> [...]."""
  return -0.5 * jnp.sum(_LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar),
                        axis=-1)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
  """log N(z; 0, I), summed over the last axis: [..., L] -> [...]."""
  return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1)


# ---------------------------------------------------------------- loss terms


def bernoulli_nll(*, logits: jax.Array, binary_target: jax.Array) -> jax.Array:
  """-log p(x|z) in nats, summed over pixels and averaged over the K draws.

  ``logits`` [B, K, *image], ``binary_target`` [B, *image] -> [B].
  """
  x = binary_target[:, None].astype(jnp.float32)
  log_lik = bernoulli_log_likelihood(logits.astype(jnp.float32), x, binary_target.ndim - 1)
  return -log_lik.mean(axis=1)


def kl_normal(*, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, diag(exp(logvar))) || N(0, I)) in nats: [B, L] x2 -> [B]."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def iwae(*, logits: jax.Array, binary_target: jax.Array, latent_sample: jax.Array,
         mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """The negative K-sample importance-weighted bound in nats -> [B].

  ``-log (1/K) Σ_k w_k`` with ``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)``,
  by log-sum-exp. ``logits`` [B, K, *image], ``binary_target`` [B, *image],
  ``latent_sample`` [B, K, L], ``mean`` and ``logvar`` [B, L].
  """
  log_w = log_importance_weights(logits, binary_target, latent_sample, mean, logvar)
  k = log_w.shape[1]
  return -(jax.nn.logsumexp(log_w, axis=1) - math.log(k))


def log_importance_weights(logits, binary_target, latent_sample, mean, logvar) -> jax.Array:
  """``log p(x|z_k) + log p(z_k) - log q(z_k|x)`` for each draw: -> [B, K]."""
  x = binary_target[:, None].astype(jnp.float32)
  log_lik = bernoulli_log_likelihood(logits.astype(jnp.float32), x, binary_target.ndim - 1)
  z = latent_sample.astype(jnp.float32)
  return (log_lik + standard_normal_log_density(z)
          - normal_log_density(z, mean[:, None], logvar[:, None]))


_SAMPLE_READS = ("logits", "binary_target")
losses.register("bernoulli_nll", bernoulli_nll, _SAMPLE_READS)
losses.register("kl_normal", kl_normal, ("mean", "logvar"))
losses.register("iwae", iwae, (*_SAMPLE_READS, "latent_sample", "mean", "logvar"))


# -------------------------------------------------------------------- modules


def binarize(key: jax.Array, x: jax.Array) -> jax.Array:
  """A binary image drawn from grey levels ``x`` in [0, 1]: each pixel is 1 with
  probability equal to its grey level. Same shape and dtype as ``x``."""
  return jax.random.bernoulli(key, x).astype(x.dtype)


class GaussianEncoder(nn.Module):
  """Flattens, applies the hidden Dense layers, then two Dense heads:
  [B, H, W, C] -> (mean [B, L], logvar [B, L])."""

  widths: Sequence[int]
  latent_size: int
  activation: str = "tanh"
  kernel_init: Callable = nn.initializers.glorot_uniform()
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x.reshape(x.shape[0], -1)
    for width in self.widths:
      h = layers.ACTIVATIONS[self.activation](
          nn.Dense(width, kernel_init=self.kernel_init, dtype=self.dtype)(h))
    mean = nn.Dense(self.latent_size, kernel_init=self.kernel_init, dtype=self.dtype,
                    name="mean")(h)
    logvar = nn.Dense(self.latent_size, kernel_init=self.kernel_init, dtype=self.dtype,
                      name="logvar")(h)
    return mean.astype(jnp.float32), logvar.astype(jnp.float32)


class BernoulliDecoder(nn.Module):
  """Hidden Dense layers, then one logit per pixel: [..., L] -> [..., *image_shape]."""

  widths: Sequence[int]
  image_shape: tuple[int, ...]
  activation: str = "tanh"
  kernel_init: Callable = nn.initializers.glorot_uniform()
  output_bias_init: Callable = nn.initializers.zeros
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for width in self.widths:
      h = layers.ACTIVATIONS[self.activation](
          nn.Dense(width, kernel_init=self.kernel_init, dtype=self.dtype)(h))
    logits = nn.Dense(layers.flat_size(self.image_shape), kernel_init=self.kernel_init,
                      bias_init=self.output_bias_init, dtype=self.dtype)(h)
    return logits.astype(jnp.float32).reshape(*z.shape[:-1], *self.image_shape)


class VAE(nn.Module):
  """Encoder, reparameterised sampling, decoder; see the module docstring for the
  output dict. The ``eval_*`` fields are read by ``evaluate`` only."""

  encoder: GaussianEncoder
  decoder: BernoulliDecoder
  num_samples: int = 1
  binarize: bool = True
  eval_nll_samples: int = 5000
  eval_binarization_seed: int = 0

  def encode(self, x: jax.Array) -> jax.Array:
    """The posterior mean: [B, H, W, C] -> [B, L]."""
    return self.encoder(x)[0]

  def decode(self, code: jax.Array) -> jax.Array:
    """Bernoulli means (pixel probabilities): [..., L] -> [..., H, W, C]."""
    return nn.sigmoid(self.decoder(code))

  def posterior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean, logvar)`` of q(z|x), each [B, L]."""
    return self.encoder(x)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    target = binarize(self.make_rng("binarize"), x) if self.binarize else x
    mean, logvar = self.encoder(target)
    eps = jax.random.normal(self.make_rng("sample"),
                            (x.shape[0], self.num_samples, mean.shape[-1]))
    z = mean[:, None] + jnp.exp(0.5 * logvar)[:, None] * eps
    return {
        # Decoded from the mean, deterministic: what the shared evaluator's
        # reconstruction error and pictures show. Training reads only the logits,
        # so under jit this decoder pass is pruned from the train step.
        "reconstruction": self.decode(mean),
        "code": mean,
        "mean": mean,
        "logvar": logvar,
        "latent_sample": z,
        "logits": self.decoder(z),
        "binary_target": target,
    }

  def importance_terms(self, x: jax.Array, eps: jax.Array):
    """For binary ``x`` [B, H, W, C] and standard normal ``eps`` [B, S, L]:
    ``(log p(x|z_s) [B, S], log w_s [B, S], KL(q(z|x) || p(z)) [B])`` with
    ``z_s = mean + std * eps_s`` and ``log w_s = log p(x, z_s) - log q(z_s|x)``."""
    mean, logvar = self.encoder(x)
    z = mean[:, None] + jnp.exp(0.5 * logvar)[:, None] * eps
    logits = self.decoder(z)
    log_lik = bernoulli_log_likelihood(logits, x[:, None], x.ndim - 1)
    # log q at z = mean + std * eps, written with eps: no division by a tiny variance.
    log_q = -0.5 * jnp.sum(_LOG_2PI + logvar[:, None] + jnp.square(eps), axis=-1)
    log_w = log_lik + standard_normal_log_density(z) - log_q
    return log_lik, log_w, kl_normal(mean=mean, logvar=logvar)


# ----------------------------------------------------------------- evaluation

# Images per compiled call and importance samples per inner step of the NLL
# estimate: the decoder's logits for one step are 100 × 250 × 784 floats (78 MB).
EVAL_IMAGES_PER_CHUNK = 100
MAX_SAMPLES_PER_STEP = 250


def binarized_test_set(images_u8: np.ndarray, seed: int) -> np.ndarray:
  """The test images binarized once from ``seed``: float32 {0, 1}, same shape."""
  return np.asarray(binarize(jax.random.key(seed), to_float(jnp.asarray(images_u8))))


def _samples_per_step(num_samples: int) -> int:
  """The largest divisor of ``num_samples`` not above ``MAX_SAMPLES_PER_STEP``."""
  return max(d for d in range(1, min(num_samples, MAX_SAMPLES_PER_STEP) + 1)
             if num_samples % d == 0)


@functools.lru_cache(maxsize=16)
def make_nll_fn(model: VAE, num_samples: int) -> Callable:
  """``fn(params, x [B, H, W, C] binary, key) -> (nll [B], elbo [B])``, jitted; one
  per model and S, so that equal models (a sweep's members) share its compilations.

  ``nll``: -log (1/S) Σ_s w_s over ``num_samples`` importance samples from q(z|x)
  (Burda et al.'s estimator of -log p(x), an upper bound in expectation that
  tightens as S grows); ``elbo``: the mean over the same samples of log p(x|z_s),
  minus the analytic KL. The samples are drawn ``_samples_per_step`` at a time
  inside a ``lax.scan``, with a running log-sum-exp, so memory does not grow with S.
  """
  per_step = _samples_per_step(num_samples)
  steps = num_samples // per_step

  @jax.jit
  def fn(params, x, key):
    latent = model.encoder.latent_size

    def body(carry, i):
      log_sum_w, sum_log_lik = carry
      eps = jax.random.normal(jax.random.fold_in(key, i), (x.shape[0], per_step, latent))
      log_lik, log_w, kl = model.apply({"params": params}, x, eps,
                                       method=VAE.importance_terms)
      carry = (jnp.logaddexp(log_sum_w, jax.nn.logsumexp(log_w, axis=1)),
               sum_log_lik + log_lik.sum(axis=1))
      return carry, kl

    start = (jnp.full((x.shape[0],), -jnp.inf), jnp.zeros((x.shape[0],)))
    (log_sum_w, sum_log_lik), kl = jax.lax.scan(body, start, jnp.arange(steps))
    nll = -(log_sum_w - math.log(num_samples))
    elbo = sum_log_lik / num_samples - kl[0]
    return nll, elbo

  return fn


def importance_sampled_nll(model: VAE, params, images_u8: np.ndarray, key: jax.Array,
                           num_samples: int, seed: int) -> dict:
  """Mean importance-sampled NLL and ELBO over ``images_u8`` binarized from ``seed``,
  in nats per image."""
  x = binarized_test_set(images_u8, seed)
  fn = make_nll_fn(model, num_samples)
  n = len(x)
  chunk = min(EVAL_IMAGES_PER_CHUNK, n)
  pad = -n % chunk
  x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  nll_sum = elbo_sum = 0.0
  for i in range(0, n, chunk):
    nll, elbo = jax.device_get(fn(params, x[i:i + chunk], jax.random.fold_in(key, i)))
    valid = min(chunk, n - i)
    nll_sum += float(np.sum(nll[:valid], dtype=np.float64))
    elbo_sum += float(np.sum(elbo[:valid], dtype=np.float64))
  return {"nll": nll_sum / n, "elbo": elbo_sum / n}


def evaluate(model: VAE, variables, dataset, key: jax.Array) -> dict:
  """The family's test figures for results.json: the importance-sampled NLL and the
  ELBO on the test set binarized once from ``eval_binarization_seed``, in nats.

  ``variables`` is ``{"params": ...}``.
  """
  params = variables["params"]
  figures = importance_sampled_nll(model, params, dataset.test_images, key,
                                   model.eval_nll_samples, model.eval_binarization_seed)
  return {**figures, "nll_samples": model.eval_nll_samples,
          "test_binarization_seed": model.eval_binarization_seed, "units": "nats per image"}


# ---------------------------------------------------------- samples, 2-D map


def prior_samples(model: VAE, params, key: jax.Array, n: int) -> np.ndarray:
  """Bernoulli means of ``n`` codes drawn from the prior: [n, H, W, C] in [0, 1]."""
  z = jax.random.normal(key, (n, model.encoder.latent_size))
  return np.asarray(model.apply({"params": params}, z, method=VAE.decode))


def latent_map(model: VAE, params, n: int = 15) -> np.ndarray:
  """For a 2-unit code: the decoded Bernoulli means over an n×n grid of the prior's
  quantiles (Kingma & Welling's figure 4): [n, n, H, W, C]."""
  if model.encoder.latent_size != 2:
    raise ValueError(f"latent_map needs latent_size=2, got {model.encoder.latent_size}.")
  from scipy.stats import norm  # only this picture needs it
  q = norm.ppf(np.linspace(0.5 / n, 1 - 0.5 / n, n)).astype(np.float32)
  grid = np.stack(np.meshgrid(q, q[::-1], indexing="xy"), axis=-1)  # [n, n, 2], y up
  return np.asarray(model.apply({"params": params}, jnp.asarray(grid), method=VAE.decode))


def write_figures(model: VAE, variables, dataset, key: jax.Array, folder) -> list[str]:
  """Writes prior_samples.png (a 10×10 grid) and, for a 2-unit code, latent_map.png
  (decoded prior quantiles) and latent_codes.png (test posterior means by digit)
  into ``folder``; returns the file names. ``variables``: ``{"params": ...}``."""
  import pathlib

  from aejax import plots
  params = variables["params"]
  folder = pathlib.Path(folder)
  samples = prior_samples(model, params, key, 100)
  plots.reconstruction_grid([("", samples[i:i + 10]) for i in range(0, 100, 10)],
                            folder / "prior_samples.png")
  written = ["prior_samples.png"]
  if model.encoder.latent_size == 2:
    grid = latent_map(model, params)
    plots.reconstruction_grid([("", row) for row in grid], folder / "latent_map.png")
    x = binarized_test_set(dataset.test_images, model.eval_binarization_seed)
    codes = np.asarray(model.apply({"params": params}, jnp.asarray(x), method=VAE.encode))
    plots.code_maps_2d([("posterior means", codes)], dataset.test_labels,
                       folder / "latent_codes.png")
    written += ["latent_map.png", "latent_codes.png"]
  return written


# ------------------------------------------------------------------- family


def build(config, image_shape, pixel_mean) -> VAE:
  init = layers.INITIALIZERS[config.init]()
  dtype = layers.compute_dtype(config)
  hidden = tuple(config.hidden)
  encoder = GaussianEncoder(widths=hidden, latent_size=config.latent_size,
                            activation=config.activation, kernel_init=init, dtype=dtype)
  # The mean image's logits as the first output bias: the binarized pixels' mean is
  # the grey levels' mean, so the decoder starts at the data's marginal.
  decoder = BernoulliDecoder(widths=hidden[::-1], image_shape=image_shape,
                             activation=config.activation, kernel_init=init,
                             output_bias_init=layers.output_bias_init(config, pixel_mean,
                                                                      False),
                             dtype=dtype)
  return VAE(encoder=encoder, decoder=decoder, num_samples=config.num_samples,
             binarize=config.binarize, eval_nll_samples=config.eval_nll_samples,
             eval_binarization_seed=config.eval_binarization_seed)


def check(config, image_shape) -> None:
  layers.check_common(config)
  layers.check_positive_ints(config, "hidden")
  for key in ("latent_size", "num_samples", "eval_nll_samples"):
    layers.check_positive_ints(config, key)
  layers.check_choice(config, "activation", layers.ACTIVATIONS)
  if not isinstance(config.binarize, bool):
    raise ValueError(f"config.model.binarize must be True or False, got {config.binarize!r}.")
  seed = config.eval_binarization_seed
  if not isinstance(seed, int) or isinstance(seed, bool):
    raise ValueError(f"config.model.eval_binarization_seed must be an integer, got {seed!r}.")


registry.register(registry.Family(
    name="vae",
    defaults=dict(hidden=(200, 200), latent_size=50, activation="tanh", num_samples=1,
                  binarize=True, eval_nll_samples=5000, eval_binarization_seed=0,
                  init="glorot_uniform", output_bias="data_mean", compute_dtype="float32"),
    build=build, check=check, rng_streams=("binarize", "sample"), evaluate=evaluate,
    figures=write_figures,
    sample=lambda model, variables, key, n: prior_samples(model, variables["params"], key, n)))
