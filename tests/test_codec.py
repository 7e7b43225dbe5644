"""The learned codec: GDN and the factorized density against NumPy, the Gaussian
conditional against SciPy, the integer tables and the range coder, a scale
hyperprior coded to bytes and back, and one small trained run coded to bytes and
back."""

import concurrent.futures
import datetime
import json
import os
import pathlib
import struct
import types
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from scipy import stats

import aejax
from aejax import analysis, codec as codec_lib, codec_format, data, engine, entropy_coding
from aejax import models
from aejax import step as step_lib
from aejax.models import ratedistortion
from experiments import codec as codec_cli, compression
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


@pytest.mark.parametrize("prior", ratedistortion.PRIORS)
def test_no_parameter_starts_weakly_typed(prior):
  """A weakly typed start (``jnp.full(shape, 0.5)``) becomes float32 after one update,
  so the step would compile a second time."""
  config = models.default_config("factorized_prior", prior=prior, features=(4,),
                                 latent_channels=2)
  variables = jax.eval_shape(lambda key: models.init_variables(  # shapes only: no compiles
      models.build(config, (8, 8, 1)), config, (8, 8, 1), key), jax.random.key(0))
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


@pytest.mark.parametrize("prior", ratedistortion.PRIORS)
def test_bad_config_is_refused_in_one_line_naming_the_key(prior):
  for key, value in (("quantization", "dither"), ("density_init_scale", 0.0),
                     ("kernel_size", 0), ("hyper_channels", 0), ("hyper_features", -1)):
    with pytest.raises(ValueError, match=f"config.model.{key}") as error:
      models.validate(models.default_config("factorized_prior", prior=prior, **{key: value}))
    assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=r"config.model.prior='scale' is unknown; choose one "
                     r"of \['factorized', 'hyperprior'\]\.$"):
    models.validate(models.default_config("factorized_prior", prior="scale"))


# ---------------------------------------------------- the scale hyperprior


def gaussian_bin_reference(values, scales):
  """``Φ((v + ½)/σ) - Φ((v - ½)/σ)`` in float64, from SciPy's upper tail for v ≥ 0."""
  v, s = np.asarray(values, np.float64), np.asarray(scales, np.float64)
  return np.where(v >= 0, stats.norm.sf((v - 0.5) / s) - stats.norm.sf((v + 0.5) / s),
                  stats.norm.cdf((v + 0.5) / s) - stats.norm.cdf((v - 0.5) / s))


VALUES = hnp.arrays(np.float32, 64, elements=st.one_of(
    st.integers(-400, 400).map(float), st.floats(-30, 30, width=32)))
SCALES = hnp.arrays(np.float32, 64,
                    elements=st.floats(float(np.float32(0.11)), 300, width=32))


@settings(max_examples=30, deadline=None)
@given(values=VALUES, scales=SCALES)
def test_gaussian_bin_probabilities_match_scipy(values, scales):
  """The model's float32 probabilities to 1e-3 bits wherever they are above the floor
  (measured: 8e-5); the tables' float64 masses to 1e-9 relative."""
  want = gaussian_bin_reference(values, scales)
  got = np.asarray(ratedistortion.gaussian_bin_probability(jnp.asarray(values),
                                                       jnp.asarray(scales)))
  bits = lambda p: -np.log2(np.maximum(p, ratedistortion.LIKELIHOOD_FLOOR))
  np.testing.assert_allclose(bits(got), bits(want), atol=1e-3)
  integers = np.rint(values)
  masses = np.array([entropy_coding.gaussian_bin_masses(v, s) for v, s in
                     zip(integers, scales.astype(np.float64))])
  np.testing.assert_allclose(masses, gaussian_bin_reference(integers, scales), rtol=1e-9,
                             atol=1e-300)


def test_scale_tables_are_monotone_and_normalised():
  tables = entropy_coding.gaussian_tables(entropy_coding.log_scales())
  scales = tables.scales
  assert len(scales) == 64 and np.all(np.diff(scales) > 0)
  np.testing.assert_allclose([scales[0], scales[-1]], [0.11, 256], rtol=1e-6)
  for i, scale in enumerate(scales.astype(np.float64)):
    row = tables.row(i)  # values -K .. K, then the escape
    assert row.min() >= 1 and row.sum() == 2 ** entropy_coding.PRECISION
    assert tables.offsets[i] == -(tables.sizes[i] // 2) and tables.sizes[i] % 2 == 1
    cdf = np.cumsum(row[:-1]) / 2 ** entropy_coding.PRECISION
    assert np.all(np.diff(cdf) > 0)
    values = np.arange(tables.offsets[i], tables.offsets[i] + tables.sizes[i])
    np.testing.assert_allclose(cdf, stats.norm.cdf((values + 0.5) / scale),
                               atol=tables.sizes[i] * 2.0 ** -entropy_coding.PRECISION)
    # Symmetric about 0 but for the rounding's remainder (ties to the lower index).
    assert np.abs(row[:-1] - row[-2::-1]).max() <= 1
  # σ is coded with the table scale nearest in log; the border of rows 4 and 5 is
  # their geometric mean.
  border = np.float32(np.sqrt(np.float64(scales[4]) * np.float64(scales[5])))
  sigma = np.array([0.01, scales[0], np.nextafter(border, np.float32(0)), border,
                    np.nextafter(border, np.float32(1)), scales[5], 300.0], np.float32)
  np.testing.assert_array_equal(tables.indexes(sigma), [0, 0, 4, 4, 5, 5, 63])


def perturbed_model(**overrides):
  config = models.default_config("factorized_prior", features=(4, 4), latent_channels=3,
                                 density_init_scale=1.0, **overrides)
  model = models.build(config, (28, 28, 1))
  init = jax.jit(lambda key: models.init_variables(model, config, (28, 28, 1), key))
  rng = np.random.default_rng(1)  # moved on the host: a jitted jax.random per leaf compiles 10 s
  params = jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(p.shape, np.float32),
                        init(jax.random.key(0))["params"])
  return model, {"params": params}


@pytest.fixture(scope="module")
def hyperprior_codec():
  """A small scale hyperprior, not trained, as a codec in batches of 16."""
  model, variables = perturbed_model(prior="hyperprior", hyper_features=4, hyper_channels=2)
  run = analysis.Run(None, None, model, variables, 0)
  run.batch_size = 16
  return codec_lib.Codec.of(run, (28, 28, 1))


@pytest.fixture(scope="module")
def sample_images():
  return data.load_sample().test_images[:40]


def test_hyperprior_decode_of_encode_is_its_reconstruction_bit_for_bit(hyperprior_codec,
                                                                        sample_images):
  codec = hyperprior_codec
  latents = codec.latents(sample_images)
  assert latents.code.shape == (40, 7, 7, 3) and latents.side.shape == (40, 4, 4, 2)
  code = latents.code.copy()
  code[0, 0, 0, 0], code[1, 3, 2, 1] = 3000, -1500  # beyond every Gaussian table: escaped
  latents = codec_lib.Latents(code, latents.side)
  strings = codec.encode_latents(latents)
  # All strings together, and one alone (σ computed at another place in the batch).
  for chosen in (slice(None), slice(1, 2)):
    decoded = codec.decode_latents(strings[chosen])
    np.testing.assert_array_equal(decoded.side, latents.side[chosen])
    np.testing.assert_array_equal(decoded.code, latents.code[chosen])
  np.testing.assert_array_equal(codec.decode(codec.encode(sample_images)),
                                codec.run.reconstruct(analysis.to_float(sample_images)))


def test_hyperprior_bits_written_match_its_rate(hyperprior_codec, sample_images):
  """With ŷ drawn from the model's own conditionals (``round(σ·N(0, 1))`` has the
  pmf ``Φ((k + ½)/σ) - Φ((k - ½)/σ)``), the rate term, the integer tables' ideal
  length and the bytes written agree: the coder adds its flush (< 4 bytes), and the
  tables (σ moved to the nearest of 64 scales, 16-bit frequencies) cost what the model
  estimates within 0.1% on average and 1 byte per image (measured: 1e-6 and 2.3 bits)."""
  codec = hyperprior_codec
  side = codec.latents(sample_images).side
  sigma = codec._batched("scales", side)
  code = np.rint(sigma * np.random.default_rng(0).standard_normal(sigma.shape))
  latents = codec_lib.Latents(code.astype(np.float32), side)
  written = np.array([len(s) for s in codec.encode_latents(latents)])
  ideal = codec.table_bits(latents) / 8
  estimated = codec.estimated_bits(latents) / 8
  assert np.all(written - ideal > -1) and np.all(written - ideal < 4.5)
  assert ideal.mean() == pytest.approx(estimated.mean(), rel=1e-3)
  assert np.all(np.abs(ideal - estimated) < 1)
  assert np.all(codec.side_bits(latents) < codec.estimated_bits(latents))


def test_the_hyperprior_evaluates_as_a_codec(hyperprior_codec, sample_images):
  codec = hyperprior_codec
  figures = ratedistortion.evaluate(codec.run.model, codec.run.variables,
                                    types.SimpleNamespace(test_images=sample_images),
                                    jax.random.key(0))
  assert figures["latent_shape"] == [7, 7, 3] and figures["side_shape"] == [4, 4, 2]
  assert figures["bytes_per_image"] * 8 == pytest.approx(figures["table_bits_per_image"],
                                                         abs=32)
  assert 0 < figures["side_bits_per_image"] < figures["estimated_bits_per_image"]


# -------------------------------------------------------------- a trained codec


@pytest.fixture(scope="module")
def trained(cli, tmp_path_factory):
  """Two λ as one sweep run (the codec's own λ as member 0, a 20× higher one as member
  1): the tests below code with member 0, the default, and the sweep's tests with both."""
  workdir = tmp_path_factory.mktemp("codec") / "run"
  cli.run_config("codec", workdir, "--config.model.features=(8, 8)",
                 "--config.model.latent_channels=4", "--config.batch_size=250",
                 "--config.sweep=losses.rate=0.05,1", env=cli.optimised())
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
  assert [f.name for f in files] == [f"codec_tables_{codec.run.step}_member0.npz"]
  np.testing.assert_array_equal(entropy_coding.load(files[0]).frequencies,
                                codec.tables.frequencies)
  again = codec_lib.Codec.from_workdir(trained, member=0)  # read back, not made again
  np.testing.assert_array_equal(again.tables.frequencies, codec.tables.frequencies)


def test_each_member_of_a_lambda_sweep_is_a_codec_of_its_own(trained, codec, test_images):
  """Member 1 has its own density, tables and bytes: fewer at its higher λ, and what
  results.json's member figures say; the compression study reads the sweep as one
  curve of two settings."""
  other = codec_lib.Codec.from_workdir(trained, member=1)
  assert (trained / f"codec_tables_{other.run.step}_member1.npz").exists()
  assert other.run.config.losses != codec.run.config.losses
  assert not np.array_equal(other.tables.frequencies, codec.tables.frequencies)
  strings = other.encode(test_images)
  np.testing.assert_array_equal(other.decode(strings),
                                other.run.reconstruct(analysis.to_float(test_images)))
  assert np.mean([len(s) for s in strings]) < np.mean([len(s) for s in codec.encode(test_images)])
  members = json.loads((trained / "results.json").read_text())["members"]
  everything = data.load(other.run.config).test_images
  for member, c in zip(members, (codec, other)):
    assert member["model_eval"]["bytes_per_image"] == pytest.approx(
        compression.measure_codec(c, everything)["bytes"], rel=1e-12)
  curves = compression.codecs_in(str(trained))
  assert list(curves) == [("run", "rate=0.05"), ("run", "rate=1")]


def test_cli_decodes_from_the_bytes_and_the_workdir_alone(cli, trained, codec, test_images,
                                                          tmp_path):
  """A fresh process, given the byte string and the workdir, writes the image the
  model reconstructs (``encode`` is the same code path as ``Codec.encode``)."""
  (tmp_path / "in.bin").write_bytes(codec.encode(test_images[:1])[0])
  cli.run_module("experiments.codec", f"--workdir={trained}", "decode",
                 str(tmp_path / "in.bin"), str(tmp_path / "out.png"))
  want = codec_lib.to_uint8(codec.run.reconstruct(analysis.to_float(test_images[:1])))[0]
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png"))[..., None], want)


def test_cli_encodes_from_a_read_only_workdir_writing_nothing_there(cli, trained, codec,
                                                                  test_images, tmp_path):
  """A workdir that cannot be written (made unwritable; a root process runs without
  its power to write anyway): its tables go to the user's cache, the string is the
  one ``Codec.encode`` writes, and the workdir is as it was."""
  import os
  import shutil
  import subprocess
  import sys
  as_user = [] if os.geteuid() else ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                                     "--"]
  if as_user and shutil.which("setpriv") is None:
    pytest.skip("a root process needs setpriv to be refused a write")
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  for tables in workdir.glob("codec_*tables_*.npz"):
    tables.unlink()
  Image.fromarray(test_images[0, ..., 0], mode="L").save(tmp_path / "in.png")
  before = sorted(workdir.rglob("*"))
  subprocess.run(["chmod", "-R", "a-w", str(workdir)], check=True)
  try:
    proc = subprocess.run(
        [*as_user, sys.executable, "-m", "experiments.codec", f"--workdir={workdir}",
         "encode", str(tmp_path / "in.png"), str(tmp_path / "out.bin")],
        cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True, text=True,
        env={**os.environ, "AEJAX_DATA_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "cache")})
  finally:
    subprocess.run(["chmod", "-R", "u+w", str(workdir)], check=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(workdir.rglob("*")) == before
  assert len(list((tmp_path / "cache" / "aejax" / "codec_tables").rglob("*.npz"))) == 1
  assert (tmp_path / "out.bin").read_bytes() == codec.encode(test_images[:1])[0]


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
  files = sorted(tmp_path.glob("*.bin"))
  assert len(files) == 30
  assert all(f.read_bytes().startswith(codec_format.SIGNATURE) for f in files)
  assert summary["file_bytes_per_image"] == summary["bytes_per_image"] + 31
  assert 0 <= summary["overhead_bytes_per_image"] < 4.5


def test_a_limit_on_the_photo_tiles_spreads_them_over_every_photograph():
  tiles = compression.photo_tiles()
  assert tiles.shape == (2026, 28, 28, 1) and tiles.dtype == np.uint8
  some = compression.photo_tiles(limit=10)
  # Evenly spaced: the first and last tiles and every 225th between them.
  np.testing.assert_array_equal(some, tiles[::225])
  np.testing.assert_array_equal(compression.photo_tiles(limit=5000), tiles)


@pytest.mark.slow
def test_the_compression_command_measures_a_sweep_as_one_curve(cli, trained, tmp_path):
  proc = cli.run_module("experiments.compression", f"--runs={trained}", "--test_images=30",
                        "--photo_tiles=40", f"--out={tmp_path}", "--name=study")
  results = json.loads((tmp_path / "study.json").read_text())
  assert list(results["runs"]) == ["run/rate=0.05", "run/rate=1"]
  mnist = results["datasets"]["MNIST test"]
  assert mnist["images"] == 30 and results["datasets"]["photo tiles"]["images"] == 40
  codecs = [r for r in mnist["rows"] if r["method"] == "run"]
  assert [r["setting"] for r in codecs] == ["rate=0.05", "rate=1"]
  assert codecs[1]["bytes"] < codecs[0]["bytes"]  # the higher λ writes less
  assert {r["method"] for r in mnist["rows"]} == {"JPEG", "WebP", "PNG", "run"}
  assert set(mnist["summary"]["run"]) == {"JPEG scan", "JPEG file", "WebP file", "WebP VP8"}
  for name in ("study_codec.png", "study_codec_ssim.png"):
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
  assert "| run | rate=1 |" in proc.stdout


# ------------------------------------------------- files that identify themselves


@pytest.fixture(scope="module")
def real_file(codec, test_images):
  """One image's file and its decoded image (decoding once compiles the decoder, so
  that no fuzzed example pays for it)."""
  file = codec.encode(test_images[:1])[0]
  return file, codec.decode([file])[0]


def test_a_file_is_its_header_then_its_payload(codec, test_images, real_file):
  file, image = real_file
  payload = codec.encode_latents(codec.latents(test_images[:1]))[0]
  assert codec_format.HEADER_SIZE == 31 and len(file) == 31 + len(payload)
  assert file[:8] == b"\x89AEC\r\n\x1a\n" and file[8] == 1 and file[31:] == payload
  assert struct.unpack(">3H", file[9:15]) == (28, 28, 1) and file[15:23] == codec.identity
  assert struct.unpack(">2I", file[23:31]) == (len(payload),
                                                zlib.crc32(file[:27] + payload))
  np.testing.assert_array_equal(
      image, codec.run.reconstruct(analysis.to_float(test_images[:1]))[0])


def test_the_python_api_writes_and_reads_the_same_files(trained, codec, test_images):
  """``aejax.load(W).codec`` (tables made in memory) and the command line's codec (the
  workdir's tables) write the same files, and read each other's."""
  python = aejax.load(trained).codec
  files = python.encode(test_images[:5])
  assert files == codec.encode(test_images[:5])
  np.testing.assert_array_equal(python.decode(files), codec.decode(files))
  with pytest.raises(aejax.CodecFormatError, match=r"^string 1 is corrupted"):
    python.decode([files[0], files[1][:-1] + bytes([files[1][-1] ^ 1])])


def bad_strings(trained, real: bytes) -> dict[str, tuple[bytes, str]]:
  """Each bad string the decoder refuses, and the reason it gives."""
  other = codec_lib.Codec.from_workdir(trained, member=1)  # a sweep's other λ
  flipped = bytearray(real)
  flipped[40] ^= 0x10
  return {
      "another model's": (other.encode(data.load_sample().test_images[:1])[0],
                          "was written by another model"),
      "truncated": (real[:-3], "is truncated"), "extended": (real + b"\0", "is extended"),
      "corrupted": (bytes(flipped), "is corrupted"),
      "random": (np.random.default_rng(0).bytes(200), "is not an aejax codec file"),
      "empty": (b"", "is empty"), "zeros": (bytes(2 ** 20), "is not an aejax codec file")}


def test_each_bad_string_is_refused_in_one_line_writing_no_image(trained, codec, real_file,
                                                                tmp_path):
  """The command line's decode (``decode_file``), for each bad string."""
  for name, (string, reason) in bad_strings(trained, real_file[0]).items():
    (tmp_path / f"{name}.bin").write_bytes(string)
    with pytest.raises(aejax.CodecFormatError) as error:
      codec_cli.decode_file(codec, str(tmp_path / f"{name}.bin"), str(tmp_path / "out.png"))
    assert str(error.value).startswith(f"{tmp_path / name}.bin {reason}"), error.value
    assert "\n" not in str(error.value) and not (tmp_path / "out.png").exists()


def test_cli_refuses_a_bad_string_with_status_1_writing_no_image(cli, trained, real_file,
                                                                tmp_path):
  cases = {name: case for name, case in bad_strings(trained, real_file[0]).items()
           if name in ("another model's", "zeros")}
  for name, (string, _) in cases.items():
    (tmp_path / f"{name}.bin").write_bytes(string)
  decode = lambda name: cli.run_module(
      "experiments.codec", f"--workdir={trained}", "decode", str(tmp_path / f"{name}.bin"),
      str(tmp_path / f"{name}.png"), check=False)
  with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
    procs = dict(zip(cases, pool.map(decode, cases)))
  for name, (_, reason) in cases.items():
    proc = procs[name]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, (name, proc.stderr[-2000:])
    assert len(errors) == 1 and errors[0].startswith(
        f"error: {tmp_path / name}.bin {reason}"), (name, errors)
    assert not (tmp_path / f"{name}.png").exists()


FUZZ_EXAMPLES = int(os.environ.get("AEJAX_FUZZ_EXAMPLES", "60"))
# Generous: decoding one string takes milliseconds; only a hang comes near it.
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=datetime.timedelta(seconds=20),
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutation(draw, real: bytes) -> bytes:
  """Random bytes, or ``real`` truncated, with bytes flipped, inserted or deleted."""
  kind = draw(st.sampled_from(["random", "truncate", "flip", "insert", "delete"]))
  if kind == "random":
    return draw(st.binary(max_size=400))
  data = bytearray(real)
  if kind == "truncate":
    return bytes(data[:draw(st.integers(0, len(data) - 1))])
  for _ in range(draw(st.integers(1, 4))):
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
      data[at] ^= draw(st.integers(1, 255))
    elif kind == "insert":
      data[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif len(data) > 1:
      del data[at]
  return bytes(data)


def decoded_or_refused(codec, string: bytes) -> np.ndarray | None:
  """The image ``string`` decodes to, or None where it is refused in one line; any
  other exception fails the test."""
  try:
    return codec.decode([string])[0]
  except codec_format.CodecFormatError as e:
    assert "\n" not in str(e) and str(e).startswith("string 0 ")
    return None


@FUZZ
@given(st.data())
def test_fuzz_each_string_decodes_to_the_real_image_or_is_refused(codec, real_file, data):
  real, image = real_file
  string = data.draw(mutation(real))
  decoded = decoded_or_refused(codec, string)
  if decoded is not None:
    np.testing.assert_array_equal(decoded, image)
  assert (decoded is not None) == (string == real)


@FUZZ
@given(st.data())
def test_fuzz_the_range_decoder_on_payloads_with_a_forged_header(codec, real_file, data):
  """Mutated payloads in headers that pass every check (as a forger would write
  them): the range decoder itself gives an image of the model's shape or refuses."""
  real, image = real_file
  payload = data.draw(mutation(real[codec_format.HEADER_SIZE:]))
  decoded = decoded_or_refused(codec, codec.pack(payload))
  assert decoded is None or decoded.shape == image.shape
