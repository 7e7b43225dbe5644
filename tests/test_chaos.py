"""Chaos: the same small run signalled, or killed, at delays spread over its whole life.

The run is vanilla on the bundled sample for 2 epochs of 23 steps with a checkpoint
every 5 steps: the imports, the data, the compilation (from JAX's persistent cache,
tests/conftest.py), 46 steps in chunks, ten checkpoints, the final evaluation and the
pictures, in a few seconds. An uninterrupted run gives the results every other run
must end with (and fills JAX's cache); two more side by side, the length of a run's
life under that load; then,
two at a time again, each of ``AEJAX_CHAOS_DELAYS`` delays (8 unless set) from 0.1 s
to just before the end gets a SIGTERM run and a SIGKILL run of its own, each rerun
once with the same command when it did not finish. A SIGTERM waits, if need be, for
the interpreter to reach the command's first line (``handles_sigterm``). A longer run of it
(docs/reliability.md):

    AEJAX_CHAOS_DELAYS=50 python -m pytest -s tests/test_chaos.py
"""

import collections
import concurrent.futures
import json
import os
import pathlib
import re
import signal
import time

import numpy as np
import pytest

ARGS = ("--config=experiments/configs/vanilla.py", "--config.dataset=mnist_sample",
        "--config.batch_size=256", "--config.num_epochs=2",
        "--config.checkpoint_every_steps=5")
STOPPED = 75  # preemption.EXIT_STOPPED
FIRST_DELAY, LAST_FRACTION = 0.1, 0.97  # of the uninterrupted run's life
ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")
# The phases a stop names ("Stopped by SIGTERM while loading the data: ...",
# "... at step 38 (epoch 2, step 15 of 23); ..."), for the tally.
PHASES = (("while starting up", "start-up"), ("while loading the data", "data"),
          ("while building the model", "building"), ("before training", "before training"),
          ("epoch", "training"), ("after training", "evaluation"),
          ("during the final evaluation", "evaluation"))  # "epoch 2, step 15 of 23",
# "the end of epoch 1": in training


def outcome(workdir) -> tuple[dict, list[dict]]:
  """results.json and metrics.jsonl without the seconds (which differ between runs)."""
  def timeless(tree):
    if isinstance(tree, dict):
      return {k: timeless(v) for k, v in tree.items() if "second" not in k}
    return tree
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return (timeless(json.loads((workdir / "results.json").read_text())),
          [timeless(json.loads(l)) for l in lines])


def phase(line: str) -> str:
  where = re.match(r"stopped: Stopped by \w+ (?:at step \d+ \()?([^:;)]*)", line).group(1)
  return next(name for text, name in PHASES if text in where)


def handles_sigterm(pid: int) -> bool:
  """Whether process ``pid`` has set its SIGTERM handler, or ignores SIGTERM, or is
  gone (``/proc``'s caught and ignored signal masks; True where there is no /proc).
  The interpreter's own start, before the command's first line runs (some 30 ms, more
  on a busy machine), is the one moment no handler of the command covers."""
  try:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
  except OSError:
    return True
  bit = 1 << (signal.SIGTERM - 1)
  return any(int(line.split()[1], 16) & bit for line in status.splitlines()
             if line.startswith(("SigCgt:", "SigIgn:")))


def attack(cli, sig: signal.Signals, delay: float, folder, baseline) -> dict:
  """Starts the run in ``folder/run``, sends ``sig`` after ``delay`` seconds, checks
  how it ended and reruns it where it did not finish; what happened, with what went
  wrong in ``problems``."""
  folder.mkdir()
  run, log = folder / "run", folder / "first.log"
  started = time.monotonic()
  child = cli.start(run, *ARGS, log=log)
  time.sleep(max(0.0, delay - (time.monotonic() - started)))
  while sig == signal.SIGTERM and child.poll() is None and not handles_sigterm(child.pid):
    time.sleep(0.005)
  if child.poll() is None:
    child.send_signal(sig)
  status = child.wait(timeout=300)
  text = log.read_text()
  others = [l for l in text.splitlines() if l and not ABSL_LINE.match(l)]
  report = {"signal": sig.name, "delay": round(delay, 2), "status": status, "problems": []}
  problem = report["problems"].append
  if "Traceback" in text:
    problem("a traceback")
  if sig == signal.SIGTERM:
    if status == STOPPED and len(others) == 1 and others[0].startswith("stopped: "):
      report["phase"] = phase(others[0])
    elif status == 0 and not others:
      report["phase"] = "finished"
    else:
      problem(f"exit {status} with {others}")
  elif status not in (-signal.SIGKILL, 0):
    problem(f"exit {status}")
  if report["problems"]:
    report["problems"].append(text[-2000:])
    return report
  if status != 0 and run.exists():
    rerun = cli.run(run, *ARGS, check=False)
    if rerun.returncode != 0:
      problem(f"the rerun exited {rerun.returncode}: {rerun.stderr[-2000:]}")
      return report
    report["reran"] = True
  elif status != 0:  # a stop or kill before the workdir was made: nothing to rerun
    report["reran"] = False
    return report
  if outcome(run) != baseline:
    problem("the results differ from the uninterrupted run's")
  report["equal"] = not report["problems"]
  return report


@pytest.mark.slow
def test_a_signal_or_a_kill_at_any_moment_then_a_rerun_ends_as_the_uninterrupted_run(
    tmp_path, cli):
  def straight(name):
    t0 = time.monotonic()
    cli.run(tmp_path / name, *ARGS)
    return time.monotonic() - t0

  straight("straight0")  # alone: it compiles what the others load from JAX's cache
  baseline = outcome(tmp_path / "straight0")
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    life = np.mean(list(pool.map(straight, ["straight1", "straight2"])))
    assert outcome(tmp_path / "straight1") == outcome(tmp_path / "straight2") == baseline
    delays = np.linspace(FIRST_DELAY, LAST_FRACTION * life,
                         int(os.environ.get("AEJAX_CHAOS_DELAYS", 8)))
    jobs = [pool.submit(attack, cli, sig, delay, tmp_path / f"{sig.name}-{i}", baseline)
            for i, delay in enumerate(delays) for sig in (signal.SIGTERM, signal.SIGKILL)]
    reports = [job.result() for job in jobs]

  tally = collections.Counter(f"{r['signal']} {r.get('phase', r['status'])}" for r in reports)
  equal = collections.Counter(r["signal"] for r in reports if r.get("equal"))
  reran = collections.Counter(r["signal"] for r in reports if r.get("reran"))
  print(f"\nchaos: life {life:.2f} s, {len(delays)} delays; ends {dict(sorted(tally.items()))}; "
        f"reruns {dict(reran)}; equal to the uninterrupted run {dict(equal)}")
  print("\n".join(f"  {r['signal']} {r['delay']:5.2f} s: {r.get('phase', r['status'])}"
                  f"{', rerun' if r.get('reran') else ''}" for r in reports))
  failed = [r for r in reports if r["problems"]]
  assert not failed, "\n\n".join(f"{r['signal']} after {r['delay']} s: "
                                 + "\n".join(r["problems"]) for r in failed)
  # Every phase was hit: the delays did spread over the run's life.
  phases = {r.get("phase") for r in reports}
  assert {"start-up", "training"} <= phases, tally
