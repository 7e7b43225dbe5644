"""Trains and evaluates an autoencoder: the absl entry point, nothing else.

    python -m experiments.main --config experiments/configs/vanilla.py --workdir runs/vanilla
    python -m experiments.main --config experiments/configs/conv.py --workdir runs/conv \
        --config.data_dir=<folder with the MNIST IDX files> --config.num_epochs=3

Running the same command again resumes from the workdir's latest checkpoint.
"""

import logging as pylogging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from aejax import data, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_libraries(record) -> bool:
  """Keeps orbax's per-save INFO chatter out of the progress log (warnings still show)."""
  return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  for handler in (logging.get_absl_handler(), *pylogging.getLogger().handlers):
    handler.addFilter(_quiet_libraries)
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, data.DataError, train.NonFiniteLossError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
