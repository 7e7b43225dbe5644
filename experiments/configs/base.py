"""Keys every config has, with the defaults the article's models share.

Not an experiment itself: each config file calls ``base.get_config()`` and changes
what its model needs. Keys:

- ``name``: the experiment's name, written into results.json;
- ``model``: ``name`` ('mlp' or 'conv'), ``hidden`` (encoder widths before the code,
  mirrored by the decoder), ``code_size``, ``code_activation``, ``conv_features``,
  ``init`` (kernel initializer), ``compute_dtype``;
- ``dataset`` ('mnist' or 'mnist_sample'), ``data_dir`` (a folder of IDX files;
  empty: ``$AEJAX_DATA_DIR``, then tensorflow-datasets, then the bundled sample);
- ``num_epochs``, ``batch_size``, ``learning_rate``, ``seed``;
- ``schedule`` ('constant' as Keras, or 'cosine' with ``warmup_epochs`` and
  ``final_lr_fraction``), ``adam_b1``, ``adam_b2``, ``adam_eps``;
- ``losses``: the loss terms and weights, e.g. ``"mse=1, l1_activity=1e-4"``;
- ``corruption``: ``name`` ('none', 'gaussian', 'masking', 'salt_and_pepper') and
  ``level`` (gaussian noise factor, or the fraction of pixels hit);
- ``epoch_mode``: 'auto', 'scan' (the epoch as one compiled call) or 'step';
- ``eval_batch_size``: test images per chunk of the one compiled evaluation.

The Keras recipe of the article: ``--config.model.init=glorot_uniform
--config.schedule=constant --config.learning_rate=1e-3 --config.adam_eps=1e-7``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "autoencoder"
  config.model = ml_collections.ConfigDict(dict(
      name="mlp", hidden=(), code_size=64, code_activation="relu",
      conv_features=(32, 32), init="glorot_uniform", compute_dtype="float32"))
  config.dataset = "mnist"
  config.data_dir = ""
  config.num_epochs = 5
  config.batch_size = 128
  config.learning_rate = 3e-3
  config.seed = 0
  config.schedule = "cosine"
  config.warmup_epochs = 0.2
  config.final_lr_fraction = 0.01
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8
  config.losses = "mse=1"
  config.corruption = ml_collections.ConfigDict(dict(name="none", level=0.0))
  config.epoch_mode = "auto"
  config.eval_batch_size = 1000
  return config
