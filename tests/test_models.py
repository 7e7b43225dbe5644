"""Model shapes for several code and batch sizes, and the config checks of models.build."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aejax import models
from experiments.configs import base


def model_config(**overrides):
  config = base.get_config().model
  config.update(overrides)
  return config


@pytest.mark.parametrize("code_size", [2, 32, 64, 784, 1024])
@pytest.mark.parametrize("hidden", [(), (128,), (1000, 500, 250)])
@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_shapes(code_size, hidden, batch):
  model = models.build(model_config(hidden=hidden, code_size=code_size), (28, 28, 1))
  x = jnp.zeros((batch, 28, 28, 1))
  params = model.init(jax.random.key(0), x)["params"]
  reconstruction, code = model.apply({"params": params}, x)
  assert reconstruction.shape == x.shape and code.shape == (batch, code_size)
  assert model.apply({"params": params}, x, method=models.Autoencoder.encode).shape == code.shape
  decoded = model.apply({"params": params}, code, method=models.Autoencoder.decode)
  assert decoded.shape == x.shape
  assert jnp.all((reconstruction >= 0) & (reconstruction <= 1))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 12, 2)])
@pytest.mark.parametrize("batch", [1, 5])
def test_conv_shapes_follow_the_article(shape, batch):
  model = models.build(model_config(name="conv"), shape)
  x = jnp.zeros((batch, *shape))
  params = model.init(jax.random.key(0), x)["params"]
  reconstruction, code = model.apply({"params": params}, x)
  assert reconstruction.shape == x.shape
  assert code.shape == (batch, shape[0] // 4, shape[1] // 4, 32)
  kernels = [params[part][f"Conv_{i}"]["kernel"].shape
             for part in ("encoder", "decoder") for i in range(len(params[part]))]
  assert kernels == [(3, 3, shape[2], 32), (3, 3, 32, 32), (3, 3, 32, 32), (3, 3, 32, 32),
                     (3, 3, 32, shape[2])]


def test_vanilla_has_the_articles_parameter_count():
  model = models.build(model_config(), (28, 28, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
  assert sum(p.size for p in jax.tree.leaves(params)) == 784 * 64 + 64 + 64 * 784 + 784


def test_linear_code_can_be_negative():
  model = models.build(model_config(code_size=30, code_activation="linear"), (28, 28, 1))
  x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))
  params = model.init(jax.random.key(0), x)["params"]
  _, code = model.apply({"params": params}, x)
  assert jnp.any(code < 0)


@pytest.mark.parametrize("overrides, shape, message", [
    (dict(code_size=0), None, "code_size must be > 0"),
    (dict(code_size=-3), None, "code_size must be > 0"),
    (dict(name="transformer"), None, "model.name='transformer' is unknown"),
    (dict(hidden=(128, 0)), None, "hidden widths must be > 0"),
    (dict(init="zeros"), None, "init=.zeros. is unknown"),
    (dict(output_bias="ones"), None, "output_bias=.ones."),
    (dict(code_activation="tanh2"), None, "code_activation"),
    (dict(name="conv"), (30, 30, 1), "divisible by 4"),
    (dict(name="conv", conv_features=()), None, "conv_features"),
])
def test_invalid_model_configs(overrides, shape, message):
  with pytest.raises(ValueError, match=message):
    models.validate(model_config(**overrides), shape)


def test_max_pool_2x2_equals_flax_max_pool():
  x = jax.random.normal(jax.random.key(0), (3, 8, 12, 5))
  expected = models.nn.max_pool(x, (2, 2), strides=(2, 2))
  assert jnp.array_equal(models.max_pool_2x2(x), expected)


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_data_mean_output_bias_starts_at_the_mean_image(name):
  pixel_mean = jax.random.uniform(jax.random.key(2), (8, 8, 1), minval=0.05, maxval=0.95)
  config = model_config(name=name, output_bias="data_mean")
  model = models.build(config, (8, 8, 1), pixel_mean=np.asarray(pixel_mean))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
  # With the decoder's weights zeroed only its last bias speaks.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, p: p if "bias" in str(path[-1]) else jnp.zeros_like(p), params)
  out = model.apply({"params": zeroed}, jnp.zeros((1, 8, 8, 1)))[0][0]
  expected = pixel_mean if name == "mlp" else jnp.full_like(pixel_mean, pixel_mean.mean())
  np.testing.assert_allclose(out, expected, rtol=1e-5)
  assert models.build(model_config(name=name), (8, 8, 1)).decoder.output_bias_init is (
      models.nn.initializers.zeros)  # no data, no data-dependent init
