"""An autoencoder as a scikit-learn transformer: ``AutoencoderTransformer``.

    from sklearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    probe = make_pipeline(AutoencoderTransformer(n_components=32, epochs=5),
                          LogisticRegression()).fit(x_train, y_train)

Where ``PCA(n_components=32)`` goes, this goes: ``fit`` trains an aejax run on the
rows of ``X`` (``aejax.train``, in a temporary workdir unless ``workdir`` is given,
removed once the model is in memory), ``transform`` gives the codes,
``inverse_transform`` decodes them, ``score`` is the negative reconstruction MSE.
It follows scikit-learn's estimator rules (``__init__`` stores its arguments; the
fitted state ends in ``_``) and passes ``sklearn.utils.estimator_checks`` apart from
the checks tests/test_sklearn.py lists with their reasons.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from aejax.images import is_pixels, to_float

# The config key of each family's code width, where n_components sets it.
_CODE_KEYS = ("code_size", "latent_size")


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
  """An autoencoder of family ``model`` whose codes are the features out.

  ``X``: float vectors ``[N, D]`` (any family that trains on vectors: ``mlp``,
  ``contractive``), or images ``[N, H, W, C]`` (uint8, or floats on the 1/255 grid)
  for every family with a code width (``vae``, ``conv``...). ``n_components``: the
  code's width (``model.code_size`` or ``latent_size``; a conv net's last ``features``
  entry, so its codes are ``H/4 · W/4 · n_components`` wide). ``standardize``: vectors
  are standardised per feature while training (aejax's ``config.standardize``),
  and ``transform`` / ``inverse_transform`` take and give them in their own units.
  ``overrides``: any other config keys, dotted (``{"model.hidden": (256,)}``).
  ``workdir``: keep the run there (it resumes from it when fitted again); None, a
  temporary folder. ``verbose``: aejax's progress lines.
  """

  def __init__(self, model: str = "mlp", n_components: int = 32, *, epochs: int = 10,
               batch_size: int = 128, learning_rate: float = 3e-3, standardize: bool = True,
               seed: int = 0, overrides: dict | None = None, workdir: str | None = None,
               verbose: bool = False):
    self.model = model
    self.n_components = n_components
    self.epochs = epochs
    self.batch_size = batch_size
    self.learning_rate = learning_rate
    self.standardize = standardize
    self.seed = seed
    self.overrides = overrides
    self.workdir = workdir
    self.verbose = verbose

  def __sklearn_tags__(self):
    tags = super().__sklearn_tags__()
    tags.transformer_tags.preserves_dtype = ["float32"]  # codes are float32
    tags.input_tags.allow_nan = False
    return tags

  def _config(self, n_train: int):
    """The run's config: aejax's defaults for the family, these parameters, then
    ``overrides`` (checked as ``aejax.get_config`` checks them)."""
    from aejax import config as config_lib  # JAX only once fitting
    config = config_lib.defaults(self.model)
    config.name = "autoencoder_transformer"
    block = config.model
    if block.name == "conv":
      block.features = (*tuple(block.features)[:-1], int(self.n_components))
    else:
      key = next((k for k in _CODE_KEYS if k in block), None)
      if key is None:
        raise ValueError(f"model={self.model!r} has no code width for n_components to set; "
                         "use a family with one (mlp, contractive, vae, conv).")
      block[key] = int(self.n_components)
    config.num_epochs = int(self.epochs)
    config.batch_size = max(1, min(int(self.batch_size), n_train))
    config.learning_rate = float(self.learning_rate)
    config.seed = int(self.seed)
    config.eval_batch_size = max(1, min(config.eval_batch_size, n_train))
    config.lock()
    return config_lib.checked(config_lib.override(config, self.overrides or {}))

  def _validate(self, X, reset: bool) -> np.ndarray:
    X = validate_data(self, X, reset=reset, allow_nd=True, dtype=None,
                      ensure_min_samples=1)
    if X.ndim not in (2, 4):
      raise ValueError(f"X must be vectors [N, D] or images [N, H, W, C]; got {X.ndim} "
                       "dimensions.")
    if X.ndim == 2 or not is_pixels(X):
      X = X.astype(np.float32)
    return X

  def fit(self, X, y=None):
    """Trains the autoencoder on the rows of ``X`` (``y`` is ignored); returns self."""
    del y
    from absl import logging  # noqa: PLC0415

    from aejax import trainer  # noqa: PLC0415 - JAX and the trainer only once fitting
    X = self._validate(X, reset=True)
    config = self._config(len(X))
    if X.ndim == 2:
      with config.unlocked():
        config.standardize = bool(self.standardize)
    workdir = self.workdir or tempfile.mkdtemp(prefix="aejax-transformer-")
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.INFO if self.verbose else logging.WARNING)
    try:
      # The rows are the test split too: the run's test figures are on X itself.
      trained = trainer.fit(config, workdir, data={"train": X, "test": X})
      trained._run  # noqa: B018 - restore it while the workdir is there
      trained.results, trained.history  # noqa: B018 - read them too
    finally:
      logging.set_verbosity(verbosity)
      if self.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    self.trained_ = trained
    self.history_ = trained.history
    self._n_features_out = int(np.prod(trained.code_shape))
    return self

  def transform(self, X) -> np.ndarray:
    """The codes of the rows of ``X``: float32 ``[N, n_features_out]``."""
    check_is_fitted(self, "trained_")
    X = self._validate(X, reset=False)
    return self.trained_.encode(X).reshape(len(X), -1)

  def inverse_transform(self, X) -> np.ndarray:
    """Codes ``[N, n_features_out]`` decoded: rows of the data's shape, float32."""
    check_is_fitted(self, "trained_")
    codes = check_array(X, dtype=np.float32)
    if codes.ndim != 2 or codes.shape[1] != self._n_features_out:
      raise ValueError(f"X must be codes [N, {self._n_features_out}]; got "
                       f"{list(codes.shape)}.")
    out = self.trained_.decode(codes.reshape(len(codes), *self.trained_.code_shape))
    return out.reshape(len(out), *self.trained_.image_shape)

  def score(self, X, y=None) -> float:
    """The negative mean squared reconstruction error over the rows of ``X`` (in its
    own units; images scaled to [0, 1]): higher is better, as scikit-learn expects."""
    del y
    check_is_fitted(self, "trained_")
    X = self._validate(X, reset=False)
    reference = to_float(X)
    error = self.trained_.reconstruct(X).astype(np.float64) - reference
    return -float(np.mean(np.square(error)))
