"""The learned codec: GDN and the factorized density against NumPy, the integer
tables and the range coder, and one small trained run coded to bytes and back."""

import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from aejax import analysis, codec as codec_lib, data, engine, entropy_coding, models
from aejax import step as step_lib
from aejax.models import ratedistortion
from experiments import codec as codec_cli
from experiments.configs import codec as codec_config

# ------------------------------------------------------------- NumPy references


def gdn_reference(x, beta, gamma, inverse):
  norm = np.sqrt(beta + np.einsum("...j,ij->...i", x ** 2, gamma))
  return x * norm if inverse else x / norm


def density_logits_reference(params, values):
  """Ballé et al. 2018 appendix 6.1, channel by channel, float64."""
  softplus = lambda v: np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0)
  out = []
  n = len([k for k in params if k.startswith("matrix_")])
  for c in range(values.shape[0]):
    x = values[c][None, :].astype(np.float64)
    for k in range(n):
      x = softplus(np.asarray(params[f"matrix_{k}"][c], np.float64)) @ x + np.asarray(
          params[f"bias_{k}"][c], np.float64)
      if k < n - 1:
        x = x + np.tanh(np.asarray(params[f"factor_{k}"][c], np.float64)) * np.tanh(x)
    out.append(x[0])
  return np.stack(out)


def perturbed(params, key, scale=0.5):
  """The parameters moved away from their (symmetric) start."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("jit", [False, True])
def test_gdn_matches_numpy(inverse, jit):
  module = ratedistortion.GDN(inverse=inverse)
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 6))
  params = perturbed(module.init(jax.random.key(1), x)["params"], jax.random.key(2))
  apply = jax.jit(module.apply) if jit else module.apply
  got = np.asarray(apply({"params": params}, x))
  beta = 1e-6 + np.asarray(params["beta"], np.float64) ** 2
  gamma = np.asarray(params["gamma"], np.float64) ** 2
  want = gdn_reference(np.asarray(x, np.float64), beta, gamma, inverse)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_gdn_and_its_inverse_undo_each_other():
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 5))
  g, ig = ratedistortion.GDN(), ratedistortion.GDN(inverse=True)
  params = g.init(jax.random.key(1), x)
  # IGDN inverts GDN only approximately (the norm is of its input, not of x): at the
  # start both are near the identity and their composition stays within a few %.
  np.testing.assert_allclose(ig.apply(params, g.apply(params, x)), x, rtol=0.1, atol=0.05)


@pytest.fixture(scope="module")
def density():
  module = ratedistortion.FactorizedDensity(channels=3, filters=(3, 3, 3), init_scale=2.0)
  values = jnp.zeros((3, 4))
  params = perturbed(module.init(jax.random.key(0), values)["params"], jax.random.key(1))
  return module, {"params": params}


def test_density_logits_match_numpy(density):
  module, variables = density
  values = np.linspace(-6, 6, 41)[None].repeat(3, 0)
  got = module.apply(variables, jnp.asarray(values, jnp.float32), method="logits")
  np.testing.assert_allclose(got, density_logits_reference(variables["params"], values),
                             rtol=1e-4, atol=1e-4)


def test_density_cdf_is_monotone_and_normalised(density):
  module, variables = density
  grid = np.linspace(-200, 200, 4001)[None].repeat(3, 0)
  cdf = jax.nn.sigmoid(module.apply(variables, jnp.asarray(grid, jnp.float32),
                                    method="logits"))
  assert np.all(np.diff(np.asarray(cdf), axis=1) >= 0)
  np.testing.assert_allclose(cdf[:, 0], 0, atol=1e-6)
  np.testing.assert_allclose(cdf[:, -1], 1, atol=1e-6)
  integers = jnp.asarray(np.arange(-200, 201)[None].repeat(3, 0), jnp.float32)
  masses = module.apply(variables, integers)  # the unit bins' probabilities
  np.testing.assert_allclose(np.sum(masses, axis=1), 1, atol=1e-5)


def test_rate_bits_match_numpy(density):
  module, variables = density
  latents = jax.random.normal(jax.random.key(3), (2, 4, 4, 3)) * 2
  got = np.asarray(ratedistortion.bits(module.bind(variables), latents))
  values = np.moveaxis(np.asarray(latents, np.float64), -1, 0).reshape(3, -1)
  logits = lambda v: density_logits_reference(variables["params"], v)
  p = np.abs(1 / (1 + np.exp(-logits(values + 0.5))) - 1 / (1 + np.exp(-logits(values - 0.5))))
  want = -np.log2(np.maximum(p, 1e-9)).reshape(3, 2, -1).sum(axis=(0, 2))
  np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("name", ["factorized_prior"])
def test_no_parameter_starts_weakly_typed(name):
  """A weakly typed start (``jnp.full(shape, 0.5)``) becomes float32 after one update,
  so the step would compile a second time."""
  config = models.default_config(name, features=(4,), latent_channels=2)
  variables = models.init_variables(models.build(config, (8, 8, 1)), config, (8, 8, 1),
                                    jax.random.key(0))
  assert [jax.tree_util.keystr(path) for path, leaf in
          jax.tree_util.tree_leaves_with_path(variables) if leaf.weak_type] == []


def test_the_codec_step_compiles_once():
  chex.clear_trace_counter()
  config = codec_config.get_config()
  config.model.features, config.model.latent_channels, config.batch_size = (4,), 2, 8
  run = engine.setup(config, data.DataSpec(image_shape=(8, 8, 1), n_train=16))
  traced_step = chex.assert_max_traces(run.program.train_step, n=1)
  start, run_chunk = step_lib.make_epoch_fns(traced_step, 16, 8, "step")
  state, images = run.state, jnp.zeros((16, 8, 8, 1), jnp.uint8)
  for _ in range(2):
    state, _ = run_chunk(state, images, start(state, run.keys.shuffle), run.keys.noise, 2)


# ------------------------------------------------------------- tables and coder


def test_quantized_frequencies_are_positive_and_sum_to_the_precision():
  rng = np.random.default_rng(0)
  for n in (1, 2, 17, 300):
    masses = rng.exponential(size=n) * (rng.random(n) < 0.5)
    masses[0] += 1e-3  # not all zero
    frequencies = entropy_coding.quantize_frequencies(masses)
    assert frequencies.sum() == 2 ** entropy_coding.PRECISION and frequencies.min() >= 1


def gaussian_tables(scales):
  from scipy import stats
  scales = np.asarray(scales)[:, None]
  return entropy_coding.make_tables(
      lambda v: stats.norm.logcdf(v / scales) - stats.norm.logsf(v / scales), len(scales))


def test_coder_round_trips_escapes_included():
  scales = [0.2, 1.0, 4.0]
  tables = gaussian_tables(scales)
  rng = np.random.default_rng(0)
  latents = np.rint(rng.normal(size=(40, 3, 3, 3)) * scales)
  latents[0, 0, 0, 0] = 5000  # far outside channel 0's table: escaped
  latents[1, 2, 1, 2] = -700
  strings = entropy_coding.encode_batch(latents, tables)
  decoded = np.stack([entropy_coding.decode(s, tables, (3, 3, 3)) for s in strings])
  np.testing.assert_array_equal(decoded, latents)
  # What is written is the tables' ideal code length plus at most a few bytes.
  overhead = np.array([len(s) for s in strings]) - entropy_coding.table_bits(latents, tables) / 8
  assert np.all(overhead > -1) and np.all(overhead < 5), overhead


def test_tables_survive_a_file(tmp_path):
  tables = gaussian_tables([0.5, 2.0])
  entropy_coding.save(tables, tmp_path / "t.npz")
  loaded = entropy_coding.load(tmp_path / "t.npz")
  for a, b in zip((tables.offsets, tables.sizes, tables.frequencies),
                  (loaded.offsets, loaded.sizes, loaded.frequencies)):
    np.testing.assert_array_equal(a, b)


def test_bad_config_is_refused_naming_the_key():
  for key, value in (("quantization", "dither"), ("density_init_scale", 0.0),
                     ("kernel_size", 0)):
    with pytest.raises(ValueError, match=key):
      models.validate(models.default_config("factorized_prior", **{key: value}))


# -------------------------------------------------------------- a trained codec


@pytest.fixture(scope="module")
def trained(cli, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("codec") / "run"
  cli.run_config("codec", workdir, "--config.model.features=(8, 8)",
                 "--config.model.latent_channels=4", "--config.batch_size=250")
  return workdir


@pytest.fixture(scope="module")
def codec(trained):
  return codec_lib.Codec.from_workdir(trained)


@pytest.fixture(scope="module")
def test_images(codec):
  return data.load(codec.run.config).test_images[:200]


def test_decode_of_encode_is_the_models_reconstruction_bit_for_bit(codec, test_images):
  strings = codec.encode(test_images)
  assert all(isinstance(s, bytes) for s in strings) and len(strings) == len(test_images)
  reconstruction = codec.run.reconstruct(analysis.to_float(test_images))
  np.testing.assert_array_equal(codec.decode(strings), reconstruction)


def test_bytes_written_match_the_rate(codec, test_images):
  latents = codec.latents(test_images)
  written = np.array([len(s) for s in codec.encode_latents(latents)])
  ideal = codec.table_bits(latents) / 8
  estimated = codec.estimated_bits(latents) / 8
  # The coder writes the tables' ideal length plus its flush (< 4 bytes) ...
  assert np.all(written - ideal > -1) and np.all(written - ideal < 4.5)
  # ... and the integer tables cost what the model's density estimates, within 1%.
  assert ideal.mean() == pytest.approx(estimated.mean(), rel=0.01)


def test_results_hold_the_codecs_figures(trained):
  model_eval = json.loads((trained / "results.json").read_text())["model_eval"]
  assert model_eval["latent_shape"] == [7, 7, 4]
  assert model_eval["bytes_per_image"] * 8 == pytest.approx(
      model_eval["table_bits_per_image"], abs=32)
  assert 0 < model_eval["psnr_db"] < 60


def test_the_tables_are_made_once_per_checkpoint(trained, codec):
  files = list(trained.glob("codec_tables_*.npz"))
  assert [f.name for f in files] == [f"codec_tables_{codec.run.step}.npz"]
  np.testing.assert_array_equal(entropy_coding.load(files[0]).frequencies,
                                codec.tables.frequencies)


def test_cli_decodes_from_the_bytes_and_the_workdir_alone(cli, trained, codec, test_images,
                                                          tmp_path):
  """A fresh process, given the byte string and the workdir, writes the image the
  model reconstructs (``encode`` is the same code path as ``Codec.encode``)."""
  (tmp_path / "in.bin").write_bytes(codec.encode(test_images[:1])[0])
  cli.run_module("experiments.codec", f"--workdir={trained}", "decode",
                 str(tmp_path / "in.bin"), str(tmp_path / "out.png"))
  want = codec_lib.to_uint8(codec.run.reconstruct(analysis.to_float(test_images[:1])))[0]
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png"))[..., None], want)


def test_cli_reads_a_png_as_encode_does(codec, test_images, tmp_path):
  Image.fromarray(test_images[0, ..., 0], mode="L").save(tmp_path / "in.png")
  image = codec_cli.read_image(str(tmp_path / "in.png"), (28, 28, 1))
  np.testing.assert_array_equal(image, test_images[:1])
  with pytest.raises(ValueError, match="28×28"):
    Image.fromarray(np.zeros((30, 28), np.uint8)).save(tmp_path / "big.png")
    codec_cli.read_image(str(tmp_path / "big.png"), (28, 28, 1))


def test_batch_mode_codes_the_test_set(codec, tmp_path):
  summary = codec_cli.batch(codec, tmp_path, "", limit=30)
  assert summary["images"] == 30 and summary["decodes_exactly"]
  assert len(list(tmp_path.glob("*.bin"))) == 30
  assert 0 <= summary["overhead_bytes_per_image"] < 4.5
