"""A hyperparameter search with Optuna, its trials trained as one program
(``aejax.search``; docs/search.md): the absl entry point, nothing else.

    python -m experiments.search --config experiments/configs/vanilla.py \
        --workdir runs/search --config.data_dir=path/to/mnist \
        --space "learning_rate=loguniform(1e-4,1e-2); weight_decay=loguniform(1e-6,1e-2)" \
        --trials 32 --slots 8 --rungs 1,3,5

``--config.x=`` overrides work as in ``experiments.main``. Running the same command
again resumes the study; SIGTERM, SIGINT or SIGUSR1 saves every slot and exits with
status 75. ``--storage`` shares one study between processes (each its own workdir
and slots): an RDB URL (``sqlite:///study.db``, ``postgresql://user@host/db``) or a
journal file's path.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from aejax import preemption, tuner, trainer
from aejax.tuner import slots as tuner_slots, space as tuner_space
from experiments import main as main_lib

_SPACE = flags.DEFINE_string("space", None, 'What to search: "key=distribution; ...", '
                             "with loguniform(a,b), uniform(a,b), int(a,b), choice(x,y,...).")
_TRIALS = flags.DEFINE_integer("trials", None, "Trials in the study, over all its processes.")
_SLOTS = flags.DEFINE_integer("slots", 8, "Trials this process trains at once.")
_OBJECTIVE = flags.DEFINE_string("objective", "mse", "The validation figure to optimise.")
_DIRECTION = flags.DEFINE_enum("direction", "minimize", ["minimize", "maximize"], "")
_SAMPLER = flags.DEFINE_string("sampler", "tpe", f"One of {', '.join(tuner_space.SAMPLERS)}.")
_PRUNER = flags.DEFINE_string("pruner", "median", f"One of {', '.join(tuner_space.PRUNERS)}.")
_RUNGS = flags.DEFINE_string("rungs", "", "Epochs at which trials report, e.g. 1,3,5 "
                             "(default: every epoch).")
_STORAGE = flags.DEFINE_string("storage", None, "Optuna storage URL or journal file "
                               "(default: a journal in the workdir).")
_STUDY = flags.DEFINE_string("study", "search", "The study's name in its storage.")
_SEED = flags.DEFINE_integer("seed", 0, "The sampler's seed.")
_VALIDATION = flags.DEFINE_float("validation_fraction", tuner_slots.VALIDATION_FRACTION,
                                 "Of the train set, held out to judge the trials.")
_STRATEGY = flags.DEFINE_enum("strategy", "refill", list(tuner_space.STRATEGIES),
                               "refill: prune and refill slots; pbt: population-based "
                               "training of --slots members (--trials unused).")
_PLOTS = flags.DEFINE_bool("plots", True, "Write Optuna's figures of the study.")
flags.mark_flags_as_required(["space", "trials"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  # The file named, however the flag was spelled (--config=x or --config x).
  config_path = config_flags.get_config_filename(flags.FLAGS["config"])
  try:
    tuner.search(main_lib._CONFIG.value, main_lib._WORKDIR.value, space=_SPACE.value,
                  trials=_TRIALS.value, slots=_SLOTS.value, objective=_OBJECTIVE.value,
                  direction=_DIRECTION.value, sampler=_SAMPLER.value, pruner=_PRUNER.value,
                  rungs=_RUNGS.value, storage=_STORAGE.value, study=_STUDY.value,
                  seed=_SEED.value, validation_fraction=_VALIDATION.value,
                  plots=_PLOTS.value, strategy=_STRATEGY.value,
                  command={"config": config_path, "overrides": overrides})
  except trainer.USER_ERRORS as e:
    main_lib._fail(str(e))
  except preemption.Stopped as e:
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_STOPPED)


if __name__ == "__main__":
  app.run(main, flags_parser=main_lib.parse_flags)
