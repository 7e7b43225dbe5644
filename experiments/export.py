"""A trained run out of aejax: ONNX, jax.export and a portable model folder.

    python -m experiments.export --workdir runs/conv --out exported/conv \
        [--member=i] [--format=onnx,jax,folder] [--data_dir=path/to/mnist]

Writes ``encoder``/``decoder``/``autoencoder`` ``.onnx`` and ``.jax_exported`` and the
folder ``aejax.load`` opens (``config.json``, ``model.safetensors``, ``README.md``),
checks every artifact against aejax's own outputs at batch sizes 1, 7 and the run's
test set, and prints each file's largest error (docs/export.md). A family that is not
exported, a missing package or an artifact beyond the tolerance is one ``error:``
line, exit status 1.
"""

import sys

from absl import app, flags

import aejax
from aejax import data, export
from aejax.workdir import WorkdirError


def _define_flags() -> None:
  flags.DEFINE_string("workdir", None, "The trained run's workdir.")
  flags.DEFINE_string("out", None, "The folder to write into (made if missing).")
  flags.DEFINE_integer("member", None, "A sweep's member to export (0 by default).")
  flags.DEFINE_list("format", list(export.FORMATS), "What to write: any of "
                    f"{', '.join(export.FORMATS)}.")
  flags.DEFINE_string("data_dir", "", "The folder of the run's data, for the check, if "
                      "the run's config does not name it.")
  flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  try:
    export.check_formats(FLAGS.format)
    trained = aejax.load(FLAGS.workdir, FLAGS.member)
    if FLAGS.data_dir:
      trained._run.config.data_dir = FLAGS.data_dir
    report = trained.export(FLAGS.out, FLAGS.format)
  except (export.ExportError, ValueError, data.DataError, WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except OSError as e:  # the output folder (read-only, a file in the way, a full disk)
    print(f"error: {e.filename or ''}: {e.strerror or e}".lstrip(": "), file=sys.stderr)
    sys.exit(1)
  print(f"wrote {', '.join(report['files'])} in {FLAGS.out}")
  print(f"checked against aejax on {report['checked_on']} ({report['examples']} examples, "
        f"batch sizes 1, 7 and all), tolerance {report['tolerance']:g} "
        "(|exported - aejax| / max(1, |aejax|)):")
  for name, error in report["max_error"].items():
    print(f"  {name:26s} max error {error:.2e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
