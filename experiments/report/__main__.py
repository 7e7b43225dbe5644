"""``python -m experiments.report``: the command's flags, then ``make_report``."""

import logging as pylogging
import shlex
import sys

from absl import app, flags, logging

from aejax import trainer
from experiments.report.study import codes_report, make_report

# Here, not in the package: importing experiments.report (tests, notebooks, next to
# experiments.benchmark) defines no flags.
flags.DEFINE_string("workdir", None, "Folder for REPORT.md, report.json, figures.")
flags.DEFINE_string("runs_dir", "", "Folder of the runs (default <workdir>/runs).")
flags.DEFINE_string("data_dir", "", "Folder of the MNIST IDX files "
                    "(default: $AEJAX_DATA_DIR, then the bundled sample).")
flags.DEFINE_bool("quick", False, "Bundled sample, 1 epoch per run, small sweeps.")
flags.DEFINE_bool("codes_only", False, "Only sections 1-4 (PCA, probes, 2-D maps), of the "
                  "runs already in --runs_dir (vanilla_k<k>, ...), on whatever data they "
                  "trained on; nothing is trained.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  for handler in (logging.get_absl_handler(), *pylogging.getLogger().handlers):
    handler.addFilter(lambda r: r.levelno >= pylogging.WARNING or "orbax" not in r.pathname)
  command = " ".join(["python -m experiments.report", *map(shlex.quote, sys.argv[1:])])
  try:
    FLAGS = flags.FLAGS
    if FLAGS.codes_only:
      if not FLAGS.runs_dir:
        raise app.UsageError("--codes_only measures the runs in --runs_dir: name it.")
      codes_report(FLAGS.workdir, FLAGS.runs_dir, command)
    else:
      make_report(FLAGS.workdir, FLAGS.runs_dir, FLAGS.data_dir, FLAGS.quick, command)
  except (FileNotFoundError, *trainer.USER_ERRORS) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
