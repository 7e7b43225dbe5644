"""What the checkpoints' array digests cost beside the save and the restore
(docs/reliability.md#verified-checkpoints).

Builds each config's model and optimizer state as a run starts (``engine.setup``, on
the bundled sample, or on ``--data_dir``'s MNIST), then ``--repeats`` times:
saves a checkpoint (``checkpoint.save``, digests included), computes the digests
alone, restores it (``checkpoint.restore``, verified) and verifies alone. Prints the
median seconds of each and the digests' share.

    python -m experiments.checkpoint_cost
    python -m experiments.checkpoint_cost --configs=conv --data_dir=path/to/mnist
"""

import json
import statistics
import tempfile
import time

from absl import app, flags

_CONFIGS = flags.DEFINE_list("configs", ["vanilla", "conv"], "experiments/configs/<name>.py")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "MNIST's IDX files (default: the bundled "
                                "sample; the arrays' sizes do not depend on it).")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Saves and restores timed.")


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def measure(name: str) -> dict:
  import importlib

  import jax

  from aejax import checkpoint, data, engine
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  else:
    config.dataset = "mnist_sample"
  run = engine.setup(config, data.load(config))
  variables, opt_state = run.state.variables, run.state.opt_state
  jax.block_until_ready((variables, opt_state))
  times = {"save": [], "digests": [], "restore": [], "verify": []}
  with tempfile.TemporaryDirectory() as folder:
    mngr = checkpoint.manager(folder, max_to_keep=1)
    for step in range(1, _REPEATS.value + 1):
      times["save"].append(_timed(lambda: checkpoint.save(
          mngr, step, variables, opt_state, {"config": {}})))
      times["digests"].append(_timed(lambda: (checkpoint.digests(variables),
                                              checkpoint.digests(opt_state))))
      out = {}
      times["restore"].append(_timed(lambda: out.update(
          restored=checkpoint.restore(mngr, step, variables, opt_state))))
      times["verify"].append(_timed(lambda: (checkpoint.digests(out["restored"][0]),
                                             checkpoint.digests(out["restored"][1]))))
    mngr.close()
  size = sum(x.nbytes for x in jax.tree.leaves((variables, opt_state)))
  medians = {k: statistics.median(v) for k, v in times.items()}
  return {"config": name, "megabytes": size / 2**20, **medians,
          "digests_share_of_save": medians["digests"] / medians["save"],
          "verify_share_of_restore": medians["verify"] / medians["restore"]}


def main(argv):
  del argv
  rows = [measure(name) for name in _CONFIGS.value]
  print("| config | arrays MB | save s | digests s | restore s | verify s |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['config']} | {r['megabytes']:.1f} | {r['save']:.4f} | {r['digests']:.4f} "
          f"({r['digests_share_of_save']:.0%}) | {r['restore']:.4f} | {r['verify']:.4f} "
          f"({r['verify_share_of_restore']:.0%}) |")
  print(json.dumps(rows))


if __name__ == "__main__":
  app.run(main)
