"""How long a training run takes to stop on a signal: from the signal to the exit,
with its checkpoint saved (docs/reliability.md#signals-and-preemption).

Starts ``experiments.main`` with the given config in a fresh workdir, waits until it
has trained ``--after_epochs`` epochs plus ``--delay`` seconds (inside an epoch, for
a long one), sends ``--signal``, and times the exit; ``--repeats`` times. Prints a
table (median, min, max seconds; the steps stopped at) and with ``--json`` writes it.

    python -m experiments.stop_latency --config=experiments/configs/conv.py \
        --config_flags=--config.data_dir=path/to/mnist --delay=5
    python -m experiments.stop_latency --config=experiments/configs/vanilla.py \
        --config_flags=--config.data_dir=path/to/mnist,--config.num_epochs=1000
"""

import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

_CONFIG = flags.DEFINE_string("config", "experiments/configs/conv.py", "Config file.")
_FLAGS = flags.DEFINE_list("config_flags", [], "More flags for experiments.main.")
_SIGNAL = flags.DEFINE_enum("signal", "SIGTERM", ["SIGTERM", "SIGINT", "SIGUSR1"],
                            "The signal sent.")
_AFTER = flags.DEFINE_integer("after_epochs", 1, "Epochs trained before the signal.")
_DELAY = flags.DEFINE_float("delay", 0.0, "Seconds after those epochs.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs timed.")
_JSON = flags.DEFINE_string("json", None, "Write the figures here as JSON.")

STOPPED = 75  # aejax.preemption.EXIT_STOPPED


def one(workdir: pathlib.Path) -> dict:
  cmd = [sys.executable, "-m", "experiments.main", f"--config={_CONFIG.value}",
         f"--workdir={workdir}", *_FLAGS.value]
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  while not metrics.exists() or len(metrics.read_text().splitlines()) < _AFTER.value:
    if proc.poll() is not None:
      raise SystemExit(f"the run ended before {_AFTER.value} epochs:\n"
                       f"{proc.stderr.read()[-2000:]}")
    time.sleep(0.01)
  time.sleep(_DELAY.value)
  start = time.monotonic()
  proc.send_signal(getattr(signal, _SIGNAL.value))
  _, stderr = proc.communicate()
  seconds = time.monotonic() - start
  if proc.returncode != STOPPED:
    raise SystemExit(f"exit status {proc.returncode}, not {STOPPED}:\n{stderr[-2000:]}")
  step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  return {"seconds": seconds, "step": step}


def main(argv):
  del argv
  runs = []
  for _ in range(_REPEATS.value):
    with tempfile.TemporaryDirectory() as folder:
      runs.append(one(pathlib.Path(folder) / "run"))
  seconds = [r["seconds"] for r in runs]
  table = {"config": _CONFIG.value, "flags": _FLAGS.value, "signal": _SIGNAL.value,
           "median_s": float(np.median(seconds)), "min_s": min(seconds),
           "max_s": max(seconds), "steps": [r["step"] for r in runs]}
  print("| config | signal | signal to exit, median (min-max) | stopped at steps |")
  print("|---|---|---|---|")
  print(f"| {_CONFIG.value} {' '.join(_FLAGS.value)} | {_SIGNAL.value} | "
        f"{table['median_s']:.2f} s ({table['min_s']:.2f}-{table['max_s']:.2f}) | "
        f"{', '.join(map(str, table['steps']))} |")
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
