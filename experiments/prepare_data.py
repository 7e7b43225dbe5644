"""Prepares an MNIST-family dataset for tensorflow-datasets, without TensorFlow.

From local IDX files (an offline machine):

    python -m experiments.prepare_data --dataset=mnist --manual_dir=path/to/mnist

or by downloading the canonical files, their sizes and sha256 checked:

    python -m experiments.prepare_data --dataset=fashion_mnist

The data goes to ``--data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``
(as ``aejax_<dataset>/<version>/``), where ``--config.dataset=<dataset>`` finds it
first. A dataset already prepared there is left as it is.

SIGTERM, SIGINT or SIGUSR1, from the command's first moment, stops it with exit status
75 and one line, leaving no half-written copy (TFDS writes into a temporary folder
and renames it once whole); the same command then prepares it.
"""

from experiments import early_signals

early_signals.install()  # before the imports below, which take seconds

import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from aejax import data, preemption  # noqa: E402

_DATASET = flags.DEFINE_enum("dataset", "mnist", list(data.IDX_DATASETS), "Dataset to prepare.")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Folder holding the four IDX files (raw or .gz); "
    "without it the files are downloaded.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir; default $TFDS_DATA_DIR, else ~/tensorflow_datasets.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  signals = preemption.Signals(early_signals.AT_ONCE).install(early_signals.first)
  name = _DATASET.value
  try:
    with signals.interrupting(f"while preparing {name} (its unfinished copy removed)",
                              f"prepare {name}"):
      from aejax.data import downloads, tfds_builders  # import TFDS: after the flags
      url = tfds_builders.BUILDERS[name].URL
      if _MANUAL_DIR.value is None and not downloads.network_reachable(url):
        print(f"error: {url} cannot be reached; pass --manual_dir=<folder with the four "
              "IDX files> to prepare from local files.", file=sys.stderr)
        sys.exit(1)
      folder = tfds_builders.prepare(name, data_dir=_DATA_DIR.value,
                                     manual_dir=_MANUAL_DIR.value)
  except (ValueError, data.DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except preemption.Stopped as e:
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_STOPPED)
  finally:
    early_signals.ignore()  # the outcome is decided: the exit status stays
  splits = tfds_builders.split_sizes(folder)
  print(f"{name}: {splits['train']} train and {splits['test']} test images prepared in {folder}")


if __name__ == "__main__":
  app.run(main)
