"""Evaluates the newest checkpoint of a run, trained to the end or not, without
training: every figure results.json holds of a model (``aejax.evaluate.model_figures``:
the test metrics, the code statistics, the family's own figures such as a VAE's
importance-sampled NLL), printed as JSON.

    python -m experiments.evaluate_run --workdir runs/vae --data_dir=path/to/mnist \
        [--json=eval.json]

The data is found as the run found it (its config, ``--data_dir`` overriding the
folder) and must be the data it was trained on (same fingerprint).
"""

import json
import pathlib
import sys

from absl import app, flags

import ml_collections

from aejax import analysis, checkpoint, config as config_lib, data, engine
from aejax import evaluate as evaluate_lib, sweep
from aejax.workdir import WorkdirError



def _define_flags() -> None:
  """Only when run as a program: importing ``evaluate`` beside another command's
  flags (tests, notebooks, experiments.benchmark) must not clash."""
  flags.DEFINE_string("workdir", None, "The run's workdir.")
  flags.DEFINE_string("data_dir", "", "Folder of the IDX files, if the run's config does "
                      "not name it.")
  flags.DEFINE_string("json", "", "Also write the figures to this file.")
  flags.mark_flags_as_required(["workdir"])


def evaluate(workdir: str, data_dir: str = "") -> dict:
  """The run's test figures; a sweep's, one entry per member under ``members``."""
  # Every member from one checkpoint: a run training there may save newer ones.
  runs = analysis.load_runs(workdir)
  # The saved config as it ran (an older one gains today's keys, sweep among them).
  saved = config_lib.upgrade(runs[0].meta["config"])
  if not sweep.members(ml_collections.ConfigDict(saved)):
    return _evaluate(runs[0], workdir, data_dir)
  return {"workdir": str(workdir), "step": runs[0].step, "sweep": saved["sweep"],
          "members": [{"member": i, **_evaluate(run, workdir, data_dir)}
                      for i, run in enumerate(runs)]}


def _evaluate(run: analysis.Run, workdir: str, data_dir: str) -> dict:
  config = run.config
  if data_dir:
    config.data_dir = data_dir
  dataset = data.load(config)
  if dataset.fingerprint != run.meta["data"]["fingerprint"]:
    raise data.DataError(f"{workdir} was trained on other data than {dataset.location}.")
  setup = engine.setup(config, dataset, abstract=True)
  evaluator = setup.evaluator(dataset.test_images, dataset.test_labels, dataset.scale)
  return {"workdir": str(workdir), "step": run.step,
          "epoch": run.step // setup.plan.steps_per_epoch,
          **evaluate_lib.model_figures(setup, run.variables, evaluator, dataset)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS
  try:
    out = evaluate(FLAGS.workdir, FLAGS.data_dir)
  except (FileNotFoundError, ValueError, data.DataError, WorkdirError,
          checkpoint.OlderCheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  text = json.dumps(out, indent=2)
  print(text)
  if FLAGS.json:
    pathlib.Path(FLAGS.json).write_text(text + "\n")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
