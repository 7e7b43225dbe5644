"""The start of every experiment config, and the recipes named after its colon.

Every key and its default is declared once, in ``aejax/config.py``; an experiment
file calls ``get_config(model)`` and changes what its model needs.
``--config experiments/configs/vanilla.py:keras`` trains with the article's Keras
recipe (``apply_recipe``) instead of aejax's defaults.
"""

import ml_collections

from aejax import config as config_lib

RECIPES = ("", "keras")


def get_config(model: str = "mlp") -> ml_collections.ConfigDict:
  """aejax's defaults, with family ``model``'s block."""
  return config_lib.defaults(model)


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
