"""The VQ-VAE: shapes, the reconstruction as a function of the code indices alone, the
EMA codebook update and dead-code reset against NumPy, the commitment term, one CLI run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import losses, models
from aejax.models import vqvae

SHAPE = (28, 28, 1)


def build(**overrides):
  config = models.default_config("vqvae", **{"features": (8, 8), "embedding_dim": 4,
                                             "num_embeddings": 16, **overrides})
  model = models.build(config, SHAPE, np.full(SHAPE, 0.13, np.float32))
  variables = models.init_variables(model, config, SHAPE, jax.random.key(0))
  return model, config, variables


def images(batch, seed=1):
  return jax.random.uniform(jax.random.key(seed), (batch, *SHAPE))


def trained_codebook(model, config, variables, x):
  """The codebook after one training call (seeded from encoder outputs)."""
  _, state = model.apply(variables, x, mutable=["codebook"],
                         rngs=models.rngs(config, jax.random.key(5)))
  return {**variables, **state}


def test_shapes_and_reconstruction_depends_only_on_the_indices():
  model, config, variables = build()
  x = images(4)
  variables = trained_codebook(model, config, variables, x)
  apply = jax.jit(model.apply, static_argnames="method")
  out = apply(variables, x)
  assert out["reconstruction"].shape == x.shape
  assert out["code"].shape == out["encoding"].shape == out["quantized"].shape == (4, 7, 7, 4)
  assert out["indices"].shape == (4, 7, 7) and out["indices"].dtype == jnp.int32
  assert out["perplexity"].shape == (4,) and 1 <= float(out["perplexity"][0]) <= 16
  assert jnp.all((out["reconstruction"] >= 0) & (out["reconstruction"] <= 1))
  # The decoder sees exactly the chosen entries.
  np.testing.assert_array_equal(apply(variables, out["quantized"], method="decode"),
                                out["reconstruction"])
  np.testing.assert_array_equal(apply(variables, out["indices"], method="decode_indices"),
                                out["reconstruction"])
  # Moving z_e towards its entry stays in the entry's (convex) Voronoi cell: the same
  # indices, the same reconstruction, bit for bit.
  for t in (0.1, 0.5, 0.9):
    moved = out["encoding"] + t * (out["quantized"] - out["encoding"])
    np.testing.assert_array_equal(
        apply(variables, moved, method="quantize_and_decode"), out["reconstruction"])
  # A change that crosses into another cell changes the reconstruction.
  other = apply(variables, out["encoding"] + 10.0, method="quantize_and_decode")
  assert not np.array_equal(other, out["reconstruction"])


def test_straight_through_gradient_reaches_the_encoder():
  model, config, variables = build()
  x = images(2)
  variables = trained_codebook(model, config, variables, x)
  loss = lambda p: jnp.mean(model.apply({**variables, "params": p}, x)["reconstruction"])
  grads = jax.jit(jax.grad(loss))(variables["params"])
  assert all(np.any(g != 0) for g in jax.tree.leaves(grads["encoder"]))


def test_ema_update_and_dead_reset_match_numpy():
  model, config, variables = build(decay=0.9, dead_threshold=0.95)
  x = images(2)
  first = np.asarray(jax.jit(model.apply)(variables, x)["indices"]).reshape(-1)
  variables = trained_codebook(model, config, variables, x)
  cb = jax.tree.map(np.asarray, variables["codebook"]["quantizer"])
  # Every entry starts at cluster_size 0: those the first batch did not use were
  # reset to encoder outputs of the batch.
  z_e = np.asarray(jax.jit(model.apply)(variables, x)["encoding"]).reshape(-1, 4)
  unused = np.bincount(first, minlength=16) == 0
  assert unused.any()
  np.testing.assert_array_equal(cb["cluster_size"][unused], 1.0)
  assert all(np.any(np.all(z_e == e, axis=1)) for e in cb["embedding"][unused])

  out, state = model.apply(variables, x, mutable=["codebook"],
                           rngs=models.rngs(config, jax.random.key(6)))
  new = jax.tree.map(np.asarray, state["codebook"]["quantizer"])
  idx = np.asarray(out["indices"]).reshape(-1)
  counts = np.bincount(idx, minlength=16)
  sums = np.zeros((16, 4))
  np.add.at(sums, idx, z_e)
  size = 0.9 * cb["cluster_size"] + 0.1 * counts
  total = 0.9 * cb["embed_sum"] + 0.1 * sums
  live = size >= 0.95
  assert live.any() and (~live).any()
  np.testing.assert_allclose(new["cluster_size"], np.where(live, size, 1.0), rtol=1e-6)
  np.testing.assert_allclose(new["embedding"][live], (total / size[:, None])[live], rtol=1e-5)
  np.testing.assert_allclose(new["embed_sum"][live], total[live], rtol=1e-5)
  assert all(np.any(np.all(z_e == e, axis=1)) for e in new["embedding"][~live])
  # Evaluation leaves the codebook alone.
  np.testing.assert_array_equal(
      model.apply({**variables, "codebook": state["codebook"]}, x)["indices"],
      np.asarray(vqvae.nearest(jnp.asarray(z_e), jnp.asarray(new["embedding"]))).reshape(
          2, 7, 7))


def test_commitment_and_perplexity_match_numpy():
  rng = np.random.default_rng(0)
  z_e, z_q = (rng.normal(size=(3, 7, 7, 4)).astype(np.float32) for _ in range(2))
  value = losses.get("commitment")({"encoding": z_e, "quantized": z_q})
  np.testing.assert_allclose(value, np.mean(np.square(z_e - z_q).reshape(3, -1), -1),
                             rtol=1e-6)
  grad = jax.grad(lambda q: vqvae.commitment(encoding=z_e, quantized=q).sum())(z_q)
  np.testing.assert_array_equal(grad, 0.0)
  indices = np.array([0, 0, 1, 3])
  p = np.array([0.5, 0.25, 0.25])
  assert float(vqvae.perplexity(jnp.asarray(indices), 8)) == pytest.approx(
      np.exp(-np.sum(p * np.log(p))), rel=1e-6)


@pytest.mark.slow
def test_cli_run_on_the_sample(tmp_path, cli):
  cli.run_config("vqvae", tmp_path, "--config.model.features=(8, 8)",
                 "--config.model.embedding_dim=4", "--config.model.num_embeddings=32",
                 "--config.batch_size=256", env=cli.optimised())
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["model"]["name"] == "vqvae" and 0 < results["test"]["mse"] < 0.2
  assert set(results["test"]["loss_terms"]) == {"loss", "mse", "commitment"}
  assert results["model_eval"]["bits_per_image"] == 49 * 5
  assert 1 <= results["model_eval"]["codes_used"] <= 32
