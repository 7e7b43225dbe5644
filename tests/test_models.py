"""Model shapes for several code and batch sizes, the output dict, and the registry's
config checks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import models
from aejax.models import conv as conv_lib, layers


def model_config(name="mlp", **overrides):
  return models.default_config(name, **overrides)


def init(model, shape, batch=1):
  x = jnp.zeros((batch, *shape))
  return x, model.init(jax.random.key(0), x)["params"]


@pytest.mark.parametrize("code_size", [2, 32, 64, 784, 1024])
@pytest.mark.parametrize("hidden", [(), (128,), (1000, 500, 250)])
@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_shapes(code_size, hidden, batch):
  model = models.build(model_config(hidden=hidden, code_size=code_size), (28, 28, 1))
  x, params = init(model, (28, 28, 1), batch)
  out = model.apply({"params": params}, x)
  assert set(out) == {"reconstruction", "code"}
  assert out["reconstruction"].shape == x.shape and out["code"].shape == (batch, code_size)
  assert model.apply({"params": params}, x, method="encode").shape == out["code"].shape
  assert model.apply({"params": params}, out["code"], method="decode").shape == x.shape
  assert jnp.all((out["reconstruction"] >= 0) & (out["reconstruction"] <= 1))


def test_compiled_apply_is_one_function_per_model_and_method():
  model = models.build(model_config(code_size=8), (28, 28, 1))
  x, params = init(model, (28, 28, 1), 3)
  encode = models.compiled_apply(model, "encode")
  assert models.compiled_apply(model, "encode") is encode  # its compilations are shared
  assert models.compiled_apply(model, "decode") is not encode
  np.testing.assert_array_equal(encode({"params": params}, x),
                                model.apply({"params": params}, x, method="encode"))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 12, 2)])
@pytest.mark.parametrize("batch", [1, 5])
def test_conv_shapes_follow_the_article(shape, batch):
  model = models.build(model_config("conv"), shape)
  x, params = init(model, shape, batch)
  out = model.apply({"params": params}, x)
  assert out["reconstruction"].shape == x.shape
  assert out["code"].shape == (batch, shape[0] // 4, shape[1] // 4, 32)
  kernels = [params[part][f"Conv_{i}"]["kernel"].shape
             for part in ("encoder", "decoder") for i in range(len(params[part]))]
  assert kernels == [(3, 3, shape[2], 32), (3, 3, 32, 32), (3, 3, 32, 32), (3, 3, 32, 32),
                     (3, 3, 32, shape[2])]


def test_vanilla_has_the_articles_parameter_count():
  _, params = init(models.build(model_config(), (28, 28, 1)), (28, 28, 1))
  assert sum(p.size for p in jax.tree.leaves(params)) == 784 * 64 + 64 + 64 * 784 + 784


def test_linear_code_can_be_negative():
  model = models.build(model_config(code_size=30, code_activation="linear"), (28, 28, 1))
  x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))
  params = model.init(jax.random.key(0), x)["params"]
  assert jnp.any(model.apply({"params": params}, x)["code"] < 0)


@pytest.mark.parametrize("name, overrides, shape, message", [
    ("mlp", dict(code_size=0), None, "code_size must be a positive integer"),
    ("mlp", dict(code_size=-3), None, "code_size must be a positive integer"),
    ("mlp", dict(hidden=(128, 0)), None, "hidden must be positive integers"),
    ("mlp", dict(init="zeros"), None, "init='zeros' is unknown"),
    ("mlp", dict(output_bias="ones"), None, "output_bias='ones'"),
    ("mlp", dict(code_activation="tanh2"), None, "code_activation"),
    ("mlp", dict(compute_dtype="int8"), None, "compute_dtype"),
    ("conv", {}, (30, 30, 1), "divisible by 4"),
    ("conv", dict(features=()), None, "features must be positive"),
])
def test_invalid_model_configs(name, overrides, shape, message):
  with pytest.raises(ValueError, match=message):
    models.validate(model_config(name, **overrides), shape)


def test_an_unknown_family_and_a_key_the_family_does_not_read_are_errors():
  with pytest.raises(ValueError, match="model.name='transformer' is unknown"):
    models.validate(_named("transformer"))
  conv = model_config("conv")
  conv.code_size = -5  # config.json would record it, yet the conv net never reads it
  with pytest.raises(ValueError, match=r"keys that model 'conv' does not read: \['code_size'\]"):
    models.validate(conv)


def _named(name):
  config = model_config("mlp")
  config.name = name
  return config


def test_each_family_documents_its_keys_and_the_configs_use_only_them():
  assert {"mlp", "conv"} <= set(models.names())
  for name in models.names():
    block = models.default_config(name)
    models.validate(block)
    assert block.name == name


def test_max_pool_2x2_equals_flax_max_pool():
  x = jax.random.normal(jax.random.key(0), (3, 8, 12, 5))
  assert jnp.array_equal(conv_lib.max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_data_mean_output_bias_starts_at_the_mean_image(name):
  pixel_mean = jax.random.uniform(jax.random.key(2), (8, 8, 1), minval=0.05, maxval=0.95)
  model = models.build(model_config(name, output_bias="data_mean"), (8, 8, 1),
                       pixel_mean=np.asarray(pixel_mean))
  _, params = init(model, (8, 8, 1))
  # With the decoder's weights zeroed only its last bias speaks.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, p: p if "bias" in str(path[-1]) else jnp.zeros_like(p), params)
  out = model.apply({"params": zeroed}, jnp.zeros((1, 8, 8, 1)))["reconstruction"][0]
  expected = pixel_mean if name == "mlp" else jnp.full_like(pixel_mean, pixel_mean.mean())
  np.testing.assert_allclose(out, expected, rtol=1e-5)
  # No data (restoring a checkpoint): zeros, the mean is in the checkpoint.
  assert models.build(model_config(name), (8, 8, 1)).decoder.output_bias_init is (
      nn.initializers.zeros)


def test_largest_activation_is_read_from_shapes():
  model = models.build(model_config("conv"), (28, 28, 1))
  assert models.largest_activation_bytes(model, model_config("conv"), (28, 28, 1)) == (
      28 * 28 * 32 * 4)
  assert layers.flat_size((28, 28, 1)) == 784
