"""Trains and evaluates an autoencoder: the absl entry point, nothing else; the call
it makes is ``aejax.train`` (``aejax.trainer.fit``), the same from Python.

    python -m experiments.main --config experiments/configs/vanilla.py --workdir runs/vanilla
    python -m experiments.main --config experiments/configs/conv.py --workdir runs/conv \
        --config.data_dir=<folder with the MNIST IDX files> --config.num_epochs=3

Running the same command again resumes from the workdir's latest checkpoint. SIGTERM,
SIGINT or SIGUSR1, from the command's first moment to its last, stops at the next safe
point (in training: a checkpoint at the step reached) and exits with status 75, for a
job script to requeue (docs/reliability.md). To go on from it with other optimizer
settings (e.g. a lower learning rate after a NaN stop), add --continue_with_changes;
the change is recorded in the run's history.

A run uses every device it sees. Across several processes (hosts), start the same
command on each with --coordinator_address=HOST:PORT --num_processes=N
--process_id=I, or --distributed=auto on clusters JAX detects (SLURM, Open MPI, TPU
pods); CPU processes talk through gloo.
"""

from experiments import early_signals

early_signals.install()  # before the imports below, which take seconds

import logging as pylogging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from aejax import config as config_lib, preemption, trainer, workdir  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and results.")
_CONTINUE = flags.DEFINE_bool(
    "continue_with_changes", False,
    "Resume the workdir's run with changed optimizer settings "
    f"({', '.join(config_lib.CONTINUE_KEYS)}), recorded in its history.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "HOST:PORT of process 0, for a run over several processes.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, from 0.")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "off", ["off", "auto"],
                                 "'auto': jax.distributed.initialize() with the cluster's "
                                 "own settings (SLURM, Open MPI, TPU pods).")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str, code: int = 1):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def parse_flags(argv):
  """absl's parsing, with an unknown config key (``--config.num_epoch``) as one line
  with ml_collections' suggestion instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    detail = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'").replace('\\"', '"')
    match = re.match(r"^'?([\w]+)'?", detail)
    key = match.group(1) if match else ""
    named = [a.split("=")[0] for a in argv if re.match(rf"--config\.([\w.]+\.)?{key}(=|$)", a)]
    hint = detail[detail.index("Did you mean"):] if "Did you mean" in detail else (
        "the config has no such key")
    _fail(f"{named[0] if named else key}: unknown config key; {hint}", code=2)
  except flags.Error as e:
    _fail(f"{e}. Pass --helpshort to see the flags.", code=2)


def _quiet_libraries(record) -> bool:
  """Keeps orbax's per-save INFO chatter out of the progress log (warnings still show),
  and orbax's and asyncio's word on a write the storage refused: the run says that in
  one line of its own (``checkpoint.save`` retrieves every such error before it
  raises; this is the guard behind it). Anything else they log shows."""
  orbax, asyncio = "orbax" in record.pathname, record.name == "asyncio"
  if not (orbax or asyncio):
    return True
  error = record.exc_info[1] if record.exc_info else None
  refused = workdir.storage_error(error or Exception(record.getMessage())) is not None
  return not refused and (asyncio or record.levelno >= pylogging.WARNING)


def initialize_distributed() -> None:
  """``jax.distributed.initialize``, before anything touches a device, when asked."""
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  given = [v is not None for v in explicit]
  if any(given) and not all(given):
    _fail("--coordinator_address, --num_processes and --process_id go together: give all "
          "three (or --distributed=auto), or none.", code=2)
  if all(given) and _DISTRIBUTED.value == "auto":
    _fail("give either --distributed=auto or the three process flags, not both.", code=2)
  if not all(given) and _DISTRIBUTED.value == "off":
    return
  import jax  # only now: initialize must come before the backends start
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if all(given):
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  else:
    jax.distributed.initialize()
  logging.info("Process %d of %d; %d devices in all.", jax.process_index(),
               jax.process_count(), jax.device_count())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  initialize_distributed()
  # aejax's handler from here to the process's end, acting on a signal that came
  # during the imports too (after jax.distributed, which may set a handler of its own).
  signals = preemption.Signals(early_signals.AT_ONCE).install(early_signals.first)
  logging.set_verbosity(logging.INFO)
  for handler in (logging.get_absl_handler(), *pylogging.getLogger().handlers):
    handler.addFilter(_quiet_libraries)
  try:
    trainer.fit(_CONFIG.value, _WORKDIR.value, continue_with_changes=_CONTINUE.value)
  except trainer.USER_ERRORS as e:
    logging.error("%s", e)
    _fail(str(e))
  except preemption.Stopped as e:
    logging.warning("%s", e)
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_STOPPED)
  finally:
    early_signals.ignore()  # the outcome is decided: the exit status stays
  if signals.received is not None:
    logging.warning("%s came once the run had finished: nothing left to stop.",
                    signals.received)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
