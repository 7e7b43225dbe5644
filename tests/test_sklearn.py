"""``aejax.sklearn.AutoencoderTransformer``: scikit-learn's own estimator checks, and
the transformer in a ``Pipeline`` under ``GridSearchCV``. Tiny runs (one epoch, two
components), so that the checks' dozens of fits take seconds each at most."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import aejax
from aejax import data as data_lib
from aejax.sklearn import AutoencoderTransformer


@pytest.fixture(scope="module")
def sample():
  """640 images of the bundled MNIST sample as [N, 784] floats in [0, 1], labelled."""
  ds = data_lib.load_sample()
  x = ds.train_images[:640].reshape(640, -1).astype(np.float32) / 255.0
  return x, ds.train_labels[:640]


def expected_failed_checks(estimator):
  """scikit-learn's checks it does not pass, each with the reason: none so far."""
  del estimator
  return {}


@parametrize_with_checks([AutoencoderTransformer(n_components=2, epochs=1)],
                         expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
  check(estimator)


def test_transformer_in_a_pipeline_with_grid_search_over_n_components(tmp_path, sample):
  x, y = sample
  pipeline = Pipeline([("codes", AutoencoderTransformer(epochs=2, standardize=False)),
                       ("probe", LogisticRegression(max_iter=200))])
  search = GridSearchCV(pipeline, {"codes__n_components": [2, 16]}, cv=2).fit(x, y)
  scores = search.cv_results_["mean_test_score"]
  assert scores[1] > scores[0] > 0.2  # 16 codes separate digits better than 2
  assert search.best_params_ == {"codes__n_components": 16}
  codes = search.best_estimator_.named_steps["codes"]
  assert codes.transform(x[:3]).shape == (3, 16)
  assert list(codes.get_feature_names_out()[:2]) == ["autoencodertransformer0",
                                                     "autoencodertransformer1"]
  # Kept in a workdir when given one: the run is there to load again.
  kept = AutoencoderTransformer(n_components=4, epochs=1, workdir=str(tmp_path / "kept"))
  kept.fit(x)
  np.testing.assert_array_equal(aejax.load(tmp_path / "kept").encode(x[:5]),
                                kept.transform(x[:5]))
  assert kept.score(x) == pytest.approx(
      -np.mean(np.square(kept.inverse_transform(kept.transform(x)) - x)), rel=1e-5)


def test_transformer_of_images_with_a_conv_net():
  images = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
  transformer = AutoencoderTransformer(model="conv", n_components=4, epochs=1)
  codes = transformer.fit_transform(images)
  assert codes.shape == (64, 2 * 2 * 4)  # two halvings of 8x8, 4 channels
  decoded = transformer.inverse_transform(codes)
  assert decoded.shape == (64, 8, 8, 1) and 0 <= decoded.min() and decoded.max() <= 1
  assert transformer.score(images) == pytest.approx(
      -np.mean(np.square(decoded.astype(np.float64) - images / 255.0)), rel=1e-5)
  with pytest.raises(ValueError, match="has no code width"):
    AutoencoderTransformer(model="topk").fit(images.reshape(64, -1) / 255.0)
