"""Encode throughput of an exported model: onnxruntime (CPU provider) against aejax's
compiled ``encode``, on a run's test set, in images per second (docs/performance.md).

    python -m experiments.export_bench --workdirs runs/vanilla,runs/conv \
        --data_dir=path/to/mnist [--repeats=5] [--json=bench.json]

Each run is exported to ONNX (``aejax.export``, a temporary folder), then the whole
test set is encoded ``--repeats`` times by each: aejax's ``Trained.encode`` (compiled,
in its batches of 1,000) and one onnxruntime call on all of it; the table gives the
median. Both are warmed up (compiled, session made) first.
"""

import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

import aejax
from aejax import export
from aejax.data import sources
from aejax.images import to_float


def _define_flags() -> None:
  flags.DEFINE_list("workdirs", None, "Trained runs' workdirs.")
  flags.DEFINE_string("data_dir", "", "The folder of the runs' data (MNIST's IDX files).")
  flags.DEFINE_integer("repeats", 5, "Timed encodes of the test set per runtime.")
  flags.DEFINE_integer("threads", 0, "onnxruntime's intra-op threads (0: its default).")
  flags.DEFINE_string("json", "", "Also write the figures here.")
  flags.mark_flags_as_required(["workdirs"])


def _median_rate(fn, x: np.ndarray, repeats: int) -> float:
  fn(x)  # warm-up: compiles, allocates
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(x)
    seconds.append(time.perf_counter() - start)
  return len(x) / statistics.median(seconds)


def bench(workdir: str, data_dir: str, repeats: int, threads: int) -> dict:
  trained = aejax.load(workdir)
  config = trained.config
  if data_dir:
    config.data_dir = data_dir
  x = to_float(sources.load(config).test_images)
  with tempfile.TemporaryDirectory() as out:
    report = trained.export(out, formats=("onnx",), images=x)
    session = export.onnx_session(pathlib.Path(out) / "encoder.onnx", threads)
    name = session.get_inputs()[0].name
    onnx_rate = _median_rate(lambda v: session.run(None, {name: v}), x, repeats)
  aejax_rate = _median_rate(trained.encode, x, repeats)
  return {"workdir": workdir, "config": config.name, "family": config.model.name,
          "images": len(x), "repeats": repeats, "aejax_images_per_s": aejax_rate,
          "onnxruntime_images_per_s": onnx_rate,
          "onnx_max_error": report["max_error"]["encoder.onnx"]}


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  rows = [bench(w, FLAGS.data_dir, FLAGS.repeats, FLAGS.threads) for w in FLAGS.workdirs]
  print("| config | images | aejax encode (images/s) | onnxruntime CPU (images/s) | "
        "ratio | ONNX max error |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| `{r['config']}` | {r['images']:,} | {r['aejax_images_per_s']:,.0f} | "
          f"{r['onnxruntime_images_per_s']:,.0f} | "
          f"{r['onnxruntime_images_per_s'] / r['aejax_images_per_s']:.2f} | "
          f"{r['onnx_max_error']:.1e} |")
  if FLAGS.json:
    pathlib.Path(FLAGS.json).write_text(json.dumps(rows, indent=2) + "\n")
  sys.stdout.flush()


if __name__ == "__main__":
  _define_flags()
  app.run(main)
