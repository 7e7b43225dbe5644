"""Keys every config has, with the defaults the article's models share.

Not an experiment itself: each config file calls ``base.get_config()`` and changes
what its model needs. Keys:

- ``name``: the experiment's name, written into results.json;
- ``model``: ``name`` (a registered family: ``aejax.models.names()``) and that
  family's own keys, which its module documents (``aejax/models/<family>.py``); a key
  the family does not read is an error. ``models.default_config(name)`` gives a
  family's block with its defaults;
- ``dataset`` ('mnist', 'fashion_mnist', 'kmnist', 'mnist_sample' or tfds:<name>),
  ``data_dir`` (a folder of IDX files; empty: ``$AEJAX_DATA_DIR``, then
  tensorflow-datasets, then the bundled sample);
- ``num_epochs``, ``batch_size``, ``learning_rate``, ``seed``;
- ``schedule`` ('constant' as Keras, or 'cosine' with ``warmup_epochs``, clamped to
  half of the run, and ``final_lr_fraction``), ``adam_b1``, ``adam_b2``, ``adam_eps``;
- ``losses``: the loss terms and weights, e.g. ``"mse=1, l1_activity=1e-4"``;
- ``corruption``: ``name`` ('none', 'gaussian', 'masking', 'salt_and_pepper') and
  ``level`` (gaussian noise factor, or the fraction of pixels hit);
- ``epoch_mode``: 'auto', 'scan' (the epoch as one compiled call) or 'step';
- ``microbatch_size``: computes each batch's gradient in chunks of this many
  examples (the same update up to rounding); 0 = auto: on a CPU, chunks small
  enough for the caches (``engine.resolve_microbatch_size``), else the whole batch;
- ``eval_batch_size``: test images per chunk of the one compiled evaluation;
- ``input``: where training batches come from: 'device' (the uint8 train set
  replicated on every device), 'stream' (read from array_record files by a grain
  pipeline, each process only its rows) or 'auto' ('device' when the train set fits
  comfortably in device memory, ``engine.resolve_input``); the same batches either way;
- ``checkpoint_every``: epochs between checkpoints (the last epoch always saves one).
  On a GPU a small model's epoch can take less time than writing its checkpoint; a
  run killed between checkpoints repeats the epochs since the last one, and computes
  them exactly as before (the same keys and order), so nothing but time is lost.

Every experiment config takes an optional argument after a colon:
``--config experiments/configs/vanilla.py:keras`` trains with the Keras recipe the
article used (``keras_recipe`` below) instead of aejax's defaults.
"""

import ml_collections

from aejax import models

RECIPES = ("", "keras")


def get_config(model: str = "mlp") -> ml_collections.ConfigDict:
  """The shared defaults (aejax's recipe), with family ``model``'s block."""
  config = ml_collections.ConfigDict()
  config.name = "autoencoder"
  config.model = models.default_config(model)
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
  config.microbatch_size = 0
  config.eval_batch_size = 1000
  config.input = "auto"
  config.checkpoint_every = 1
  return config


def apply_recipe(config: ml_collections.ConfigDict, recipe: str | None):
  """Applies the recipe named after the config file's colon; returns the config.

  'keras' is what Keras 3 does by default, as the article's code ran: glorot-uniform
  kernels, zero biases, Adam with a constant learning rate of 1e-3 and epsilon 1e-7,
  and MSE as the reconstruction term.
  """
  if (recipe or "") not in RECIPES:
    raise ValueError(f"Unknown recipe {recipe!r} after the config file's colon; "
                     f"choose one of {[r for r in RECIPES if r]} or none.")
  if recipe == "keras":
    config.model.init = "glorot_uniform"
    config.model.output_bias = "zeros"
    config.schedule = "constant"
    config.learning_rate = 1e-3
    config.adam_eps = 1e-7
    config.losses = config.losses.replace("bce=", "mse=")
  return config
