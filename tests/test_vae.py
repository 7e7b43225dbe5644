"""The VAE / IWAE family: shapes, loss terms against NumPy, the bound's properties,
binarization, the importance-sampled NLL, and one run through the command line."""

import json
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from aejax import config as config_lib
from aejax import engine, losses, models
from aejax.objective import Objective
from aejax.models import vae
from experiments.configs import vae as vae_config

IMAGE = (4, 4, 1)  # small images: every test compiles its own shapes


def tiny(num_samples=1, latent_size=3, **overrides):
  config = models.default_config("vae", hidden=(8,), latent_size=latent_size,
                                 num_samples=num_samples, **overrides)
  model = models.build(config, IMAGE)
  params = models.init_variables(model, config, IMAGE, jax.random.key(0))["params"]
  return config, model, params


def apply(config, model, params, x, seed=1):
  return model.apply({"params": params}, x, rngs=models.rngs(config, jax.random.key(seed)))


def grey(n, seed=0):
  return jax.random.uniform(jax.random.key(seed + 100), (n, *IMAGE))


# NumPy references in float64, written from the definitions.
def np_log_bernoulli(logits, x):
  """log p(x | logits) per draw, summed over pixels: [B, K, *image], [B, *image] -> [B, K]."""
  logits = logits.astype(np.float64)
  x = x[:, None].astype(np.float64)
  log_p1, log_p0 = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
  return (x * log_p1 + (1 - x) * log_p0).reshape(*logits.shape[:2], -1).sum(-1)


def np_log_normal(z, mean, logvar):
  var = np.exp(logvar)
  return (-0.5 * (np.log(2 * np.pi * var) + (z - mean) ** 2 / var)).sum(-1)


def np_log_w(logits, x, z, mean, logvar):
  z, mean, logvar = (np.asarray(a, np.float64) for a in (z, mean, logvar))
  return (np_log_bernoulli(logits, x) + np_log_normal(z, 0.0, 0.0)
          - np_log_normal(z, mean[:, None], logvar[:, None]))


def random_case(seed, b=3, k=4, latent=5, logit_scale=5.0):
  rng = np.random.default_rng(seed)
  logits = (logit_scale * rng.standard_normal((b, k, *IMAGE))).astype(np.float32)
  x = (rng.random((b, *IMAGE)) < 0.4).astype(np.float32)
  mean = rng.standard_normal((b, latent)).astype(np.float32)
  logvar = rng.uniform(-3, 1, (b, latent)).astype(np.float32)
  z = (mean[:, None] + np.exp(0.5 * logvar)[:, None] * rng.standard_normal(
      (b, k, latent))).astype(np.float32)
  return dict(logits=logits, binary_target=x, latent_sample=z, mean=mean, logvar=logvar)


# --------------------------------------------------------------------- shapes


def test_outputs_have_the_documented_shapes_and_ranges():
  config, model, params = tiny(num_samples=2)
  out = apply(config, model, params, grey(5))
  assert {k: v.shape for k, v in out.items()} == {
      "reconstruction": (5, *IMAGE), "code": (5, 3), "mean": (5, 3), "logvar": (5, 3),
      "latent_sample": (5, 2, 3), "logits": (5, 2, *IMAGE), "binary_target": (5, *IMAGE)}
  assert jnp.all((out["reconstruction"] >= 0) & (out["reconstruction"] <= 1))
  np.testing.assert_array_equal(out["code"], out["mean"])
  code = model.apply({"params": params}, grey(5), method="encode")
  # The encoder sees the binarized image when training, the given one through encode.
  assert code.shape == (5, 3)
  decoded = model.apply({"params": params}, code, method="decode")
  assert decoded.shape == (5, *IMAGE)


def test_the_objective_reads_every_term_from_the_model():
  config, model, params = tiny(num_samples=2)
  objective = Objective(model, config, losses.parse_weights(
      "bernoulli_nll=1, kl_normal=0.5, iwae=1"))
  x = grey(3)
  loss, terms, _ = objective(params, {"inputs": x, "target": x}, jax.random.key(2))
  assert set(terms) == {"bernoulli_nll", "kl_normal", "iwae"}
  np.testing.assert_allclose(
      loss, terms["bernoulli_nll"] + 0.5 * terms["kl_normal"] + terms["iwae"], rtol=1e-6)


# ----------------------------------------------------------- terms vs NumPy


class TermsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_bernoulli_nll_matches_numpy(self):
    for seed in range(3):
      case = random_case(seed, logit_scale=40.0)  # far past where a sigmoid saturates
      got = self.variant(vae.bernoulli_nll)(logits=case["logits"],
                                            binary_target=case["binary_target"])
      want = -np_log_bernoulli(case["logits"], case["binary_target"]).mean(1)
      np.testing.assert_allclose(got, want, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_kl_normal_matches_numpy(self):
    for seed in range(3):
      case = random_case(seed)
      mean, logvar = (case[k].astype(np.float64) for k in ("mean", "logvar"))
      want = 0.5 * (np.exp(logvar) + mean ** 2 - 1 - logvar).sum(-1)
      got = self.variant(vae.kl_normal)(mean=case["mean"], logvar=case["logvar"])
      np.testing.assert_allclose(got, want, rtol=1e-5)
    zeros = jnp.zeros((2, 4))
    np.testing.assert_array_equal(vae.kl_normal(mean=zeros, logvar=zeros), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_iwae_matches_numpy(self):
    for seed in range(3):
      case = random_case(seed)
      log_w = np_log_w(case["logits"], case["binary_target"], case["latent_sample"],
                       case["mean"], case["logvar"])
      want = -(logsumexp(log_w, axis=1) - np.log(log_w.shape[1]))
      got = self.variant(vae.iwae)(**case)
      np.testing.assert_allclose(got, want, rtol=1e-5)

  def test_terms_gradients_match_finite_differences(self):
    case = {k: jnp.asarray(v) for k, v in random_case(0, b=2, k=2, latent=2).items()}
    chex.assert_numerical_grads(
        lambda mean, logvar: vae.kl_normal(mean=mean, logvar=logvar).sum(),
        (case["mean"], case["logvar"]), order=1, atol=5e-2, rtol=5e-2)
    chex.assert_numerical_grads(
        lambda logits: vae.bernoulli_nll(logits=logits,
                                         binary_target=case["binary_target"]).sum(),
        (case["logits"] / 5,), order=1, atol=5e-2, rtol=5e-2)


# ------------------------------------------------------- the bound's properties


def test_iwae_with_one_sample_is_the_negative_single_sample_elbo():
  """On the same draw: iwae(k=1) = bernoulli_nll + log q(z|x) - log p(z), whose
  expectation is bernoulli_nll + kl_normal (-ELBO); averaged over many draws it
  lands within the Monte-Carlo error of the analytic-KL form."""
  draws = 1000
  config, model, params = tiny(num_samples=draws)
  out = apply(config, model, params, grey(3))
  per_draw = jax.vmap(lambda l, z: vae.iwae(
      logits=l[:, None], binary_target=out["binary_target"], latent_sample=z[:, None],
      mean=out["mean"], logvar=out["logvar"]), in_axes=(1, 1), out_axes=1)(
          out["logits"], out["latent_sample"])  # [B, draws]: iwae with k = 1 each
  z = np.asarray(out["latent_sample"], np.float64)
  log_q_minus_log_p = (np_log_normal(z, np.asarray(out["mean"])[:, None],
                                     np.asarray(out["logvar"])[:, None])
                       - np_log_normal(z, 0.0, 0.0))
  nll_per_draw = -np_log_bernoulli(np.asarray(out["logits"]), np.asarray(out["binary_target"]))
  np.testing.assert_allclose(per_draw, nll_per_draw + log_q_minus_log_p, rtol=1e-5, atol=1e-4)
  negative_elbo = (vae.bernoulli_nll(logits=out["logits"], binary_target=out["binary_target"])
                   + vae.kl_normal(mean=out["mean"], logvar=out["logvar"]))
  error = 5 * per_draw.std(axis=1) / np.sqrt(draws)
  assert np.all(np.abs(per_draw.mean(axis=1) - negative_elbo) < error)


def test_iwae_bound_is_tighter_than_the_mean_over_the_same_draws():
  config, model, params = tiny(num_samples=16)
  out = apply(config, model, params, grey(4))
  reads = {k: out[k] for k in losses.get("iwae").reads}
  log_w = vae.log_importance_weights(**reads)
  assert np.all(vae.iwae(**reads) <= -log_w.mean(axis=1) + 1e-4)  # Jensen


# ---------------------------------------------------------------- binarization


def test_binarization_is_binary_with_the_grey_level_as_mean():
  levels = jnp.array([0.0, 0.1, 0.5, 0.93, 1.0])
  draws = vae.binarize(jax.random.key(3), jnp.broadcast_to(levels, (20000, 5)))
  assert set(np.unique(draws)) <= {0.0, 1.0}
  error = 4 * np.sqrt(levels * (1 - levels) / 20000) + 1e-9
  assert np.all(np.abs(draws.mean(0) - levels) <= error)


def test_the_model_draws_a_fresh_binary_target_per_key_unless_told_not_to():
  config, model, params = tiny()
  x = grey(8)
  a, b = (apply(config, model, params, x, seed)["binary_target"] for seed in (1, 2))
  assert set(np.unique(a)) <= {0.0, 1.0} and not np.array_equal(a, b)
  config, model, params = tiny(binarize=False)
  np.testing.assert_array_equal(apply(config, model, params, x)["binary_target"], x)


def test_the_test_set_binarization_depends_on_its_seed_only():
  images = np.asarray(grey(6) * 255, np.uint8)
  first = vae.binarized_test_set(images, 7)
  np.testing.assert_array_equal(first, vae.binarized_test_set(images, 7))
  assert not np.array_equal(first, vae.binarized_test_set(images, 8))


# ------------------------------------------------------------- the NLL estimate


def test_chunked_nll_equals_the_direct_log_mean_exp(monkeypatch):
  """The running log-sum-exp over sample steps gives the same number as all samples
  at once, and the ELBO uses the same draws with the analytic KL."""
  monkeypatch.setattr(vae, "MAX_SAMPLES_PER_STEP", 5)
  config, model, params = tiny()
  x = jnp.asarray(vae.binarized_test_set(np.asarray(grey(3) * 255, np.uint8), 0))
  key = jax.random.key(4)
  nll, elbo = vae.make_nll_fn(model, 20)(params, x, key)
  eps = jnp.concatenate([jax.random.normal(jax.random.fold_in(key, i), (3, 5, 3))
                         for i in range(4)], axis=1)
  log_lik, log_w, kl = model.apply({"params": params}, x, eps,
                                   method=vae.VAE.importance_terms)
  np.testing.assert_allclose(nll, -(logsumexp(np.asarray(log_w, np.float64), axis=1)
                                    - np.log(20)), rtol=1e-5)
  np.testing.assert_allclose(elbo, np.asarray(log_lik).mean(1) - kl, rtol=1e-5)


def test_nll_estimate_tightens_with_more_samples_and_sits_below_the_negative_elbo():
  config, model, params = tiny(latent_size=2)
  x = jnp.asarray(vae.binarized_test_set(np.asarray(grey(40) * 255, np.uint8), 0))
  estimates, elbos = {}, {}
  for samples in (1, 10, 100):
    fn = vae.make_nll_fn(model, samples)
    runs = [fn(params, x, jax.random.key(seed)) for seed in range(3)]
    estimates[samples] = np.mean([nll.mean() for nll, _ in runs])
    elbos[samples] = np.mean([elbo.mean() for _, elbo in runs])
  assert estimates[1] >= estimates[10] >= estimates[100]
  assert estimates[100] <= -elbos[100]
  assert abs(estimates[1] + elbos[100]) < 0.05 * abs(elbos[100])  # one sample: an ELBO


def test_importance_sampled_nll_averages_over_a_padded_last_chunk(monkeypatch):
  monkeypatch.setattr(vae, "EVAL_IMAGES_PER_CHUNK", 4)
  config, model, params = tiny()
  images = np.asarray(grey(6) * 255, np.uint8)  # chunks of 4 and 2 (+2 padding)
  got = vae.importance_sampled_nll(model, params, images, jax.random.key(5), 3, 0)
  x = np.concatenate([vae.binarized_test_set(images, 0), np.zeros((2, *IMAGE), np.float32)])
  fn = vae.make_nll_fn(model, 3)
  parts = [fn(params, jnp.asarray(x[i:i + 4]), jax.random.fold_in(jax.random.key(5), i))
           for i in (0, 4)]
  nll = np.concatenate([p[0] for p in parts])[:6]
  np.testing.assert_allclose(got["nll"], nll.mean(), rtol=1e-5)


# --------------------------------------------------------------------- config


def test_config_errors_name_the_key():
  for key, value in (("num_samples", 0), ("eval_nll_samples", -1), ("activation", "swish")):
    with pytest.raises(ValueError, match=key):
      models.validate(models.default_config("vae", **{key: value}))


def test_iwae_recipe_is_a_valid_config():
  config = vae_config.get_config("iwae")
  config_lib.validate(config)
  assert config.losses == "iwae=1" and config.model.num_samples == 50
  with pytest.raises(ValueError, match="recipe"):
    vae_config.get_config("keras")


@pytest.mark.slow
def test_cli_run_writes_the_nll_and_elbo(tmp_path, cli):
  # A 3-unit code: the 2-unit code's pictures (test_figures_... below) would cost
  # most of the run in matplotlib.
  cli.run_config("vae", tmp_path, "--config.model.hidden=(32,)", "--config.model.latent_size=3",
                 "--config.model.eval_nll_samples=10", timeout=300)
  results = json.loads((tmp_path / "results.json").read_text())
  figures = results["model_eval"]
  assert figures["nll_samples"] == 10 and figures["test_binarization_seed"] == 0
  # One epoch of a small model on 6,000 images: a sanity range, nats per image.
  assert 60 < figures["nll"] < 300 and figures["nll"] < -figures["elbo"] + 1.0
  line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
  assert set(line["test"]) == {"loss", "bernoulli_nll", "kl_normal"}
  assert (tmp_path / "prior_samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_prior_samples_and_the_2d_latent_map(tmp_path):
  config, model, params = tiny(latent_size=2)
  images = np.asarray(grey(30) * 255, np.uint8)
  dataset = types.SimpleNamespace(test_images=images, test_labels=np.arange(30) % 10)
  written = vae.write_figures(model, {"params": params}, dataset, jax.random.key(6),
                              tmp_path)
  assert written == ["prior_samples.png", "latent_map.png", "latent_codes.png"]
  for name in written:
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert vae.latent_map(model, params, n=5).shape == (5, 5, *IMAGE)
