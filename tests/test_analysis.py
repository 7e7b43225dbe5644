"""The report's metrics and baselines against NumPy, scikit-learn and scikit-image."""

import json

import jax
import numpy as np
import pytest
from skimage import metrics as skmetrics

import aejax
from aejax import analysis, corruption, data, engine, evaluate, models, trainer
from experiments.configs import vanilla


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
  """Twenty real test digits, uint8 [20, 28, 28, 1]."""
  return data.load_sample().test_images[:20]


def test_psnr_of_identical_images_is_infinite_not_capped(digits):
  x = analysis.to_float(digits)
  assert analysis.psnr_db(reference=x, reconstruction=x) == float("inf")


def test_psnr_matches_scikit_image_and_pools_the_mse_over_images(digits):
  rng = np.random.default_rng(0)
  x = analysis.to_float(digits)
  y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
  for i in range(3):
    expected = skmetrics.peak_signal_noise_ratio(x[i], y[i], data_range=1.0)
    assert analysis.psnr_db(reference=x[i:i + 1], reconstruction=y[i:i + 1]) == pytest.approx(
        expected, rel=1e-6)
  pooled = 10 * np.log10(1 / np.mean((x.astype(np.float64) - y) ** 2))
  assert analysis.psnr_db(reference=x, reconstruction=y) == pytest.approx(pooled, rel=1e-9)


def test_ssim_of_identical_images_is_one(digits):
  x = analysis.to_float(digits)
  assert analysis.ssim(reference=x, reconstruction=x) == pytest.approx(1.0, abs=1e-6)


def test_ssim_matches_scikit_image_gaussian_ssim(digits):
  rng = np.random.default_rng(1)
  x = analysis.to_float(digits)
  y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
  expected = np.mean([
      skmetrics.structural_similarity(a[..., 0], b[..., 0], data_range=1.0,
                                      gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False) for a, b in zip(x, y)])
  # Batches of 7 exercise the batched loop and its ragged last batch.
  assert analysis.ssim(reference=x, reconstruction=y, batch_size=7) == pytest.approx(
      expected, abs=1e-5)
  assert analysis.ssim(reference=x, reconstruction=y) < 0.9


def test_psnr_and_ssim_of_colour_images_pool_over_channels():
  """[N, H, W, 3]: PSNR of the MSE over every pixel and channel, SSIM the mean of
  each channel's (scikit-image's channel_axis)."""
  rng = np.random.default_rng(3)
  x = rng.random((4, 16, 16, 3)).astype(np.float32)
  y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
  for i in range(2):
    assert analysis.psnr_db(reference=x[i:i + 1], reconstruction=y[i:i + 1]) == pytest.approx(
        skmetrics.peak_signal_noise_ratio(x[i], y[i], data_range=1.0), rel=1e-6)
  expected = np.mean([
      skmetrics.structural_similarity(a, b, data_range=1.0, channel_axis=-1,
                                      gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False) for a, b in zip(x, y)])
  assert analysis.ssim(reference=x, reconstruction=y) == pytest.approx(expected, abs=1e-5)


def test_ssim_refuses_mismatched_shapes(digits):
  x = analysis.to_float(digits)
  with pytest.raises(ValueError, match="one shape"):
    analysis.ssim(reference=x, reconstruction=x[:, :27])


@pytest.mark.parametrize("n_images", [300, 9])  # more images than pixels, and fewer
def test_pca_error_per_example_is_the_sum_of_discarded_eigenvalues(n_images):
  rng = np.random.default_rng(2)
  x = rng.standard_normal((n_images, 12)) @ rng.standard_normal((12, 12)) + 3.0
  eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
  for k in (1, 4, min(11, n_images - 1)):
    pca = analysis.fit_pca(x, k)
    sse = analysis.sse_per_image(reference=x, reconstruction=analysis.pca_reconstruct(pca, x))
    assert np.mean(sse) == pytest.approx(eigenvalues[k:].sum(), rel=1e-8)


def test_pca_with_more_components_than_pixels_keeps_them_all_and_is_exact():
  rng = np.random.default_rng(3)
  x = rng.random((50, 8))
  pca = analysis.fit_pca(x, 1024)
  assert pca.n_components_ == 8
  assert np.allclose(analysis.pca_reconstruct(pca, x), x, atol=1e-10)


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_quantization_round_trip_is_within_half_a_step(bits):
  rng = np.random.default_rng(bits)
  codes = rng.standard_normal((200, 6)) * np.array([1, 2, 5, 0.1, 3, 1])
  codes[:, 5] = 0.7  # a unit constant on the data: decoded exactly
  low, high = analysis.code_range(codes)
  levels = analysis.quantize(codes, low, high, bits)
  assert levels.min() >= 0 and levels.max() <= 2 ** bits - 1
  error = np.abs(analysis.dequantize(levels, low, high, bits) - codes)
  step = (high - low) / (2 ** bits - 1)
  assert np.all(error[:, :5] <= step[:5] / 2 + 1e-5)
  assert np.allclose(error[:, 5], 0, atol=1e-6)


def test_quantization_clips_values_outside_the_range():
  low, high = np.array([0.0]), np.array([1.0])
  levels = analysis.quantize(np.array([[-3.0], [0.5], [9.0]]), low, high, 8)
  assert levels[:, 0].tolist() == [0, 128, 255]
  with pytest.raises(ValueError, match="bits"):
    analysis.quantize(np.zeros((1, 1)), low, high, 0)


def test_code_bytes_rounds_bits_up_to_whole_bytes():
  assert analysis.code_bytes(30, 8) == 30
  assert analysis.code_bytes(30, 4) == 15
  assert analysis.code_bytes(3, 4) == 2


def test_jpeg_bytes_are_positive_and_grow_with_quality(digits):
  x = analysis.to_float(digits)
  sizes, scans, psnrs = [], [], []
  for quality in (5, 25, 50, 75, 95):
    decoded, file_bytes, scan_bytes = analysis.jpeg_roundtrip(digits, quality)
    assert decoded.shape == digits.shape and decoded.dtype == np.uint8
    assert np.all(scan_bytes > 0) and np.all(file_bytes > scan_bytes)
    sizes.append(file_bytes.mean()), scans.append(scan_bytes.mean())
    psnrs.append(analysis.psnr_db(reference=x, reconstruction=analysis.to_float(decoded)))
  assert np.all(np.diff(sizes) > 0) and np.all(np.diff(scans) > 0)
  assert np.all(np.diff(psnrs) > 0)


def test_jpeg_refuses_float_images_and_non_jpeg_bytes(digits):
  with pytest.raises(ValueError, match="uint8"):
    analysis.jpeg_roundtrip(analysis.to_float(digits), 50)
  with pytest.raises(ValueError, match="start-of-scan"):
    analysis.entropy_coded_bytes(b"\xff\xd8\xff\xe0\x00\x04ab")


def test_code_sparsity_counts_zeros_per_example_and_dead_units():
  codes = np.array([[0.0, 2.0, 0.0, -1.0],
                    [0.0, 0.0, 0.0, 3.0]])
  sparsity = analysis.code_sparsity(codes)
  assert sparsity == {"mean_activation": 0.75, "fraction_zero": 0.625,
                      "active_per_example": 1.5, "never_active": 2, "units": 4}


def test_inverted_and_shifted_digits(digits):
  assert np.array_equal(analysis.inverted(analysis.inverted(digits)), digits)
  moved = analysis.shifted(digits, 4)
  assert np.array_equal(moved[:, 4:, 4:], digits[:, :-4, :-4])
  assert not moved[:, :4].any() and not moved[:, :, :4].any()


def test_corrupt_is_the_core_corruption_and_depends_only_on_the_key(digits):
  x = analysis.to_float(digits)
  key = jax.random.key(7)
  noisy = analysis.corrupt(x, "masking", 0.5, key, batch_size=100)
  again = analysis.corrupt(x, "masking", 0.5, key, batch_size=100)
  direct = corruption.make("masking", 0.5)(jax.random.fold_in(key, 0), x)
  assert np.array_equal(noisy, again) and np.array_equal(noisy, np.asarray(direct))


def test_probes_separate_separable_classes_and_not_random_labels():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 3, 600)
  features = np.eye(3)[labels] * 4 + 0.3 * rng.standard_normal((600, 3))
  accuracy = analysis.probe_accuracy(features[:400], labels[:400], features[400:], labels[400:])
  assert accuracy["logistic"] > 0.97 and accuracy["knn"] > 0.97
  shuffled = rng.permutation(labels)
  chance = analysis.probe_accuracy(features[:400], shuffled[:400], features[400:],
                                   shuffled[400:])
  assert chance["logistic"] < 0.6 and chance["knn"] < 0.6


def test_load_run_restores_the_trained_model(tmp_path):
  config = vanilla.get_config()
  config.dataset = "mnist_sample"
  config.num_epochs = 1
  config.model.code_size = 16
  results = trainer.train_and_evaluate(config, str(tmp_path))
  run = analysis.load_run(tmp_path)
  assert run.step == results["steps"]
  test = analysis.to_float(data.load_sample().test_images)
  run.batch_size = 300  # four batches, the last one padded
  codes = run.encode(test)
  assert codes.shape == (1000, 16) and np.all(codes >= 0)  # relu code
  sse = analysis.sse_per_image(reference=test, reconstruction=run.decode(codes))
  assert np.mean(sse) == pytest.approx(results["test"]["sse_per_image"], rel=1e-4)
  assert json.loads((tmp_path / "config.json").read_text())["model"]["code_size"] == 16
  # Everything comes from the checkpoint: no config.json or results.json is needed.
  (tmp_path / "config.json").unlink()
  (tmp_path / "results.json").unlink()
  again = analysis.load_run(tmp_path)
  assert again.config.model.code_size == 16 and again.meta["data"]["n_train"] == 6000
  np.testing.assert_array_equal(again.encode(test[:5]), codes[:5])


def test_load_run_says_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    analysis.load_run(tmp_path)


def test_evaluate_run_gives_the_runs_own_test_metrics(tmp_path):
  from experiments import evaluate_run
  config = vanilla.get_config()
  config.dataset, config.num_epochs, config.model.code_size = "mnist_sample", 1, 16
  results = trainer.train_and_evaluate(config, str(tmp_path))
  again = evaluate_run.evaluate(str(tmp_path))
  assert again["step"] == results["steps"] and again["epoch"] == 1
  # Every figure the run wrote, code statistics included: one function computes them.
  written = {k: results[k] for k in evaluate.FIGURES if k in results}
  assert "code_stats" in written
  assert {k: again[k] for k in evaluate.FIGURES if k in again} == written
  assert aejax.Trained(tmp_path).evaluate() == written


def _untrained_run(family: str, **model) -> analysis.Run:
  config = vanilla.get_config()
  config.model = models.default_config(family, **model)
  config.dataset = "mnist_sample"
  spec = data.DataSpec(image_shape=(28, 28, 1), n_train=6000)
  setup = engine.setup(config, spec)
  return analysis.Run(None, config, setup.model, setup.state.variables, 0)


def test_jacobian_norm_of_any_encoder_matches_the_contractive_models_own():
  run = _untrained_run("contractive", code_size=12, hidden=(20,))
  x = jax.random.uniform(jax.random.key(4), (7, 28, 28, 1))
  own = np.asarray(run.model.apply(run.variables, x)["jacobian_frobenius_sq"])
  np.testing.assert_allclose(run.jacobian_frobenius_sq(np.asarray(x), batch_size=3), own,
                             rtol=1e-5)


def test_code_sensitivity_is_first_order_in_small_noise_and_zero_without_it(digits):
  run = _untrained_run("mlp", code_size=16, code_activation="sigmoid")
  images = analysis.to_float(digits)
  frobenius = run.jacobian_frobenius_sq(images)
  small = analysis.code_sensitivity(run, images, 1e-3, jax.random.key(0), batch_size=64)
  # E||J ε||² = σ² ||J||²_F: the measured gain is the Jacobian's RMS norm.
  assert small["rms_gain"] == pytest.approx(np.sqrt(np.mean(frobenius)), rel=0.05)
  assert small["relative"] == pytest.approx(small["displacement"] / small["code_spread"])
  larger = analysis.code_sensitivity(run, images, 1e-1, jax.random.key(0))
  assert larger["displacement"] > 10 * small["displacement"]
  assert analysis.code_sensitivity(run, images, 0.0, jax.random.key(0))["displacement"] == 0
