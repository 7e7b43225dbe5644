"""A model added in one file, with no edit anywhere else: this file registers a tiny
family whose model returns an extra array and draws from a ``sample`` rng, and a loss
term that reads that array. It is also the experiment config that trains it through
the command line:

    python -m experiments.main --config tests/test_plugin_model.py --workdir <dir>
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import losses, models
from experiments.configs import base

class NoisyCodeAutoencoder(nn.Module):
  """784 → code (+ gaussian noise from the 'sample' rng) → 784; outputs the noise too."""

  code_size: int
  noise: float
  image_shape: tuple

  def setup(self):
    self.encoder = nn.Dense(self.code_size)
    self.decoder = nn.Dense(int(np.prod(self.image_shape)))

  def encode(self, x):
    return nn.relu(self.encoder(x.reshape(len(x), -1)))

  def decode(self, code):
    return nn.sigmoid(self.decoder(code)).reshape(len(code), *self.image_shape)

  def __call__(self, x):
    code = self.encode(x)
    noise = self.noise * jax.random.normal(self.make_rng("sample"), code.shape)
    return {"reconstruction": self.decode(code + noise), "code": code, "noise": noise}


models.register(models.Family(
    name="noisy_code", defaults=dict(code_size=8, noise=0.1),
    build=lambda config, image_shape, pixel_mean: NoisyCodeAutoencoder(
        config.code_size, config.noise, image_shape),
    rng_streams=("sample",)))
losses.register("noise_energy", lambda *, noise: jnp.sum(noise ** 2, axis=-1), ("noise",))


def get_config():
  config = base.get_config("noisy_code")
  config.name = "noisy_code"
  config.dataset = "mnist_sample"
  config.num_epochs, config.batch_size = 2, 200
  config.losses = "mse=1, noise_energy=0.01"
  return config


@pytest.mark.slow
def test_a_model_registered_in_one_file_trains_through_the_cli(tmp_path, cli):
  cli.run(tmp_path, f"--config={__file__}")
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["model"] == {"name": "noisy_code", "code_size": 8, "noise": 0.1}
  assert set(results["test"]["loss_terms"]) == {"loss", "mse", "noise_energy"}
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["epoch"] for l in lines] == [1, 2]
  assert lines[1]["train"]["mse"] < lines[0]["train"]["mse"]
  # E|noise|² = code_size · noise²: the term reads the model's own draw.
  assert results["test"]["loss_terms"]["noise_energy"] == pytest.approx(8 * 0.1 ** 2, rel=0.1)


def test_the_sample_stream_is_fed_and_folded_from_the_key():
  config = get_config()
  model = models.build(config.model, (28, 28, 1))
  variables = models.init_variables(model, config.model, (28, 28, 1), jax.random.key(0))
  x = jnp.zeros((4, 28, 28, 1))
  draw = lambda key: model.apply(variables, x, rngs=models.rngs(config.model, key))["noise"]
  np.testing.assert_array_equal(draw(jax.random.key(1)), draw(jax.random.key(1)))
  assert not np.allclose(draw(jax.random.key(1)), draw(jax.random.key(2)))
