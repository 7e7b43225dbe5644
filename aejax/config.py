"""Every key a run reads, declared once: its default and what it is.

``defaults(model)`` is the config every experiment file starts from
(``experiments/configs/*.py`` change only what their model needs); a key that is not
declared here is an error on the command line (``--config.num_epoch``), so adding a
key means adding one line below and reading it where it is used. The model's own keys
live with its family (``aejax/models/<family>.py``, ``models.default_config``).

``get_config(name_or_path, **overrides)`` is an experiment's config from Python, each
override checked as ``--config.<key>=`` checks it (``override``); ``checked`` is
``validate`` raising ``ConfigError``.

``validate`` checks every value before any compute, naming the key; ``upgrade`` gives
a config saved by an older aejax (config.json, a checkpoint's metadata) the keys it
lacks, at the values that older aejax used for them. ``LAYOUT_KEYS`` and
``CONTINUE_KEYS`` say which keys a resumed run may change (``aejax.workdir``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import math
import pathlib
from typing import Any, Mapping

import ml_collections

from aejax import corruption as corruption_lib, losses, models, sweep
from aejax.data import sources
from aejax.optimizer import SCHEDULES



class ConfigError(ValueError):
  """A config a run cannot use: a key it does not have, or a value it refuses; the
  message names the key and says what to change."""


EPOCH_MODES = ("auto", "scan", "step")
INPUTS = ("auto", "device", "stream")
CHANNELS = (0, 1, 3)
BIT_DEPTHS = (0, 8, 16)


def defaults(model: str = "mlp") -> ml_collections.ConfigDict:
  """aejax's defaults for every key, with family ``model``'s block."""
  config = ml_collections.ConfigDict()
  config.name = "autoencoder"  # The experiment's name, written into results.json.
  config.model = models.default_config(model)  # The family's name and its own keys.
  # Data.
  config.dataset = "mnist"  # A registered source (aejax.data.sources; docs/data.md).
  config.data_dir = ""  # IDX or CIFAR folder; empty: $AEJAX_DATA_DIR, TFDS, the sample.
  config.image_size = 0  # folder: resize and centre-crop to n x n; 0: as stored.
  config.bit_depth = 0  # folder: 8 (uint8) or 16 (uint16), scaled; 0: the first file's.
  config.channels = 0  # folder: 1 (grey) or 3 (RGB), converted; 0: as stored.
  config.test_fraction = 0.1  # folder (files, by name) or npy: (every 1/f-th row) held out.
  config.standardize = False  # npz and npy: vectors: per-feature mean 0, std 1 (recorded).
  config.skip_unreadable = False  # folder: leave out files that cannot be read (counted).
  config.prepared_dir = ""  # prepared copies of folders, npz, CIFAR; empty: TFDS's dir.
  config.input = "auto"  # 'device' (train set on every device), 'stream' or 'auto'.
  # Optimization.
  config.num_epochs = 5
  config.batch_size = 128  # The global batch, sharded over every device.
  config.seed = 0  # Initialization, epoch order, noise and sampling all follow it.
  config.learning_rate = 3e-3  # The peak rate of the schedule.
  config.schedule = "cosine"  # 'constant' (Keras), 'cosine' or 'exponential'.
  config.warmup_epochs = 0.2  # Cosine's linear warm-up, clamped to half of the run.
  config.final_lr_fraction = 0.01  # The last step's rate, as a fraction of the peak.
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8
  config.weight_decay = 0.0  # Decoupled (AdamW) weight decay; 0 is plain Adam.
  # The objective.
  config.losses = "mse=1"  # Loss terms and weights (aejax/losses.py), summed by the step.
  config.corruption = ml_collections.ConfigDict()
  config.corruption.name = "none"  # 'none', 'gaussian', 'masking', 'salt_and_pepper'.
  config.corruption.level = 0.0  # Gaussian noise factor, or the fraction of pixels hit.
  # How the same arithmetic runs.
  config.epoch_mode = "auto"  # 'scan' (an epoch per call), 'step', or 'auto' by backend.
  config.microbatch_size = 0  # Gradient chunks of this many examples; 0: auto by backend.
  config.eval_batch_size = 1000  # Test images per chunk of the compiled evaluation.
  config.checkpoint_every = 1  # Epochs between checkpoints; the last epoch always saves.
  # Checkpoints inside epochs too: at the first chunk boundary this many steps, or this
  # many minutes, after the last checkpoint (aejax/preemption.py); 0: off.
  config.checkpoint_every_steps = 0
  config.checkpoint_every_minutes = 0.0
  # Many models in one program: a grid, e.g. "seed=0:5; losses.l1_activity=1e-5,1e-4"
  # (aejax/sweep.py); empty: one model.
  config.sweep = ""
  # Members a sweep's step trains side by side in one vmap: 0 (auto) all of them, or
  # one at a time on XLA:CPU for families that run slowly vmapped (conv nets); k: in
  # groups of k, one group after another (needs the members on one device).
  config.sweep_vmap = 0
  return config


# Keys a resumed run may change freely: how the same arithmetic is laid out (equal up
# to float rounding), where the (fingerprinted, so identical) data is read from, and
# more epochs.
LAYOUT_KEYS = ("num_epochs", "epoch_mode", "microbatch_size", "eval_batch_size", "data_dir",
               "prepared_dir",
               "checkpoint_every", "checkpoint_every_steps", "checkpoint_every_minutes",
               "input", "sweep_vmap")
# Keys a resumed run may change with --continue_with_changes: the optimizer's numbers.
CONTINUE_KEYS = ("learning_rate", "final_lr_fraction", "warmup_epochs", "adam_b1",
                 "adam_b2", "adam_eps", "weight_decay")


@dataclasses.dataclass(frozen=True)
class Since:
  """A key's history: the aejax version (``pyproject.toml``'s) that introduced it and,
  where it differs from the key's default, the value that older aejax used
  (``before``), which ``upgrade`` gives a config saved before the key existed."""

  version: str
  before: Any = None
  differs: bool = False


def _before(version: str, value) -> Since:
  return Since(version, value, differs=True)


# Every key of ``defaults`` but the family's block (whose keys its family completes,
# ``models.registry``), dotted inside groups. A new key gets its line here, with the
# value older runs used where that is not its default; a test fails otherwise.
HISTORY = {
    "name": Since("0.1.0"), "model": Since("0.1.0"), "dataset": Since("0.1.0"),
    "data_dir": Since("0.1.0"), "image_size": Since("0.1.0"), "channels": Since("0.1.0"),
    # Older runs read every file as 8 bits: the same data for an 8-bit folder (which
    # resumes); a 16-bit folder's data is new (its fingerprint differs, and says so).
    "bit_depth": Since("0.2.0"),
    "test_fraction": Since("0.1.0"), "standardize": Since("0.1.0"),
    # Runs saved before config.input existed trained on the device.
    "input": _before("0.1.0", "device"),
    "num_epochs": Since("0.1.0"), "batch_size": Since("0.1.0"), "seed": Since("0.1.0"),
    "learning_rate": Since("0.1.0"), "schedule": Since("0.1.0"),
    "warmup_epochs": Since("0.1.0"), "final_lr_fraction": Since("0.1.0"),
    "adam_b1": Since("0.1.0"), "adam_b2": Since("0.1.0"), "adam_eps": Since("0.1.0"),
    "weight_decay": Since("0.1.0"), "losses": Since("0.1.0"), "corruption": Since("0.1.0"),
    "corruption.name": Since("0.1.0"), "corruption.level": Since("0.1.0"),
    "epoch_mode": Since("0.1.0"), "microbatch_size": Since("0.1.0"),
    "eval_batch_size": Since("0.1.0"), "checkpoint_every": Since("0.1.0"),
    "checkpoint_every_steps": Since("0.1.0"), "checkpoint_every_minutes": Since("0.1.0"),
    "sweep": Since("0.1.0"), "sweep_vmap": Since("0.1.0"),
    "skip_unreadable": Since("0.2.0"), "prepared_dir": Since("0.2.0"),
}


def keys(config: ml_collections.ConfigDict | dict, prefix: str = "") -> list[str]:
  """Every key of ``config``, groups' keys dotted (``corruption.name``), but those of
  the family's block (``model``'s own)."""
  out = []
  for key, value in config.items():
    out.append(prefix + key)
    if isinstance(value, (dict, ml_collections.ConfigDict)) and key != "model":
      out.extend(keys(value, f"{prefix}{key}."))
  return out


def upgrade(saved: dict) -> dict:
  """A saved config (a dict, as in config.json) with every key it lacks added at the
  value the aejax that saved it used: the default, or ``HISTORY``'s ``before``."""
  model = saved.get("model", {}).get("name", "mlp")
  full = json_dict(defaults(model))
  for key, since in HISTORY.items():
    if since.differs:
      *groups, last = key.split(".")
      block = full
      for group in groups:
        block = block[group]
      block[last] = since.before
  return _merge(full, saved)


def json_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON types (tuples become lists), as config.json holds it."""
  return json.loads(config.to_json())


def _merge(base: dict, saved: dict) -> dict:
  out = dict(base)
  for key, value in saved.items():
    out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(
        base.get(key), dict) else value
  return out


# -------------------------------------------------------------------- validation


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, key: str, value, what: str) -> None:
  if not ok:
    raise ValueError(f"config.{key} {what}, got {value!r}.")


def _one_of(config, key: str, choices) -> None:
  if config[key] not in choices:
    raise ValueError(f"config.{key}={config[key]!r} is unknown; choose one of {list(choices)}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the key for any value a run cannot use, before compute."""
  models.validate(config.model)
  losses.parse_weights(config.losses)
  _require(_finite(config.corruption.level), "corruption.level", config.corruption.level,
           "must be a finite number")
  corruption_lib.make(config.corruption.name, config.corruption.level)
  sources.validate_dataset_name(config.dataset)
  for key in ("num_epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
    _require(isinstance(config[key], int) and not isinstance(config[key], bool)
             and config[key] > 0, key, config[key], "must be a positive integer")
  _require(isinstance(config.checkpoint_every_steps, int)
           and not isinstance(config.checkpoint_every_steps, bool)
           and config.checkpoint_every_steps >= 0, "checkpoint_every_steps",
           config.checkpoint_every_steps, "must be 0 (off) or a positive integer")
  _require(_finite(config.checkpoint_every_minutes) and config.checkpoint_every_minutes >= 0,
           "checkpoint_every_minutes", config.checkpoint_every_minutes,
           "must be 0 (off) or a positive number of minutes")
  _require(isinstance(config.seed, int) and not isinstance(config.seed, bool), "seed",
           config.seed, "must be an integer")
  _require(_finite(config.learning_rate) and config.learning_rate > 0, "learning_rate",
           config.learning_rate, "must be > 0")
  _one_of(config, "schedule", SCHEDULES)
  _require(_finite(config.warmup_epochs) and config.warmup_epochs >= 0, "warmup_epochs",
           config.warmup_epochs, "must be ≥ 0 (it is clamped to half of the run)")
  _require(_finite(config.final_lr_fraction) and 0 <= config.final_lr_fraction <= 1,
           "final_lr_fraction", config.final_lr_fraction, "must lie in [0, 1]")
  if config.schedule == "exponential":
    _require(config.final_lr_fraction > 0, "final_lr_fraction", config.final_lr_fraction,
             "must be > 0 for the exponential schedule")
  for key in ("adam_b1", "adam_b2"):
    _require(_finite(config[key]) and 0 <= config[key] < 1, key, config[key],
             "must lie in [0, 1)")
  _require(_finite(config.adam_eps) and config.adam_eps > 0, "adam_eps", config.adam_eps,
           "must be > 0 (Adam divides by sqrt(v) + eps)")
  _require(_finite(config.weight_decay) and config.weight_decay >= 0, "weight_decay",
           config.weight_decay, "must be a finite number ≥ 0")
  microbatch = config.microbatch_size
  _require(isinstance(microbatch, int) and microbatch >= 0 and not (
      microbatch and config.batch_size % microbatch), "microbatch_size", microbatch,
      f"must be 0 (auto) or a divisor of batch_size={config.batch_size}")
  _one_of(config, "epoch_mode", EPOCH_MODES)
  _one_of(config, "input", INPUTS)
  _require(isinstance(config.image_size, int) and not isinstance(config.image_size, bool)
           and config.image_size >= 0, "image_size", config.image_size,
           "must be 0 (as stored) or a positive integer")
  _one_of(config, "channels", CHANNELS)
  _one_of(config, "bit_depth", BIT_DEPTHS)
  _require(_finite(config.test_fraction) and 0 < config.test_fraction < 1, "test_fraction",
           config.test_fraction, "must lie strictly between 0 and 1")
  _require(isinstance(config.sweep_vmap, int) and not isinstance(config.sweep_vmap, bool)
           and config.sweep_vmap >= 0, "sweep_vmap", config.sweep_vmap,
           "must be 0 (auto) or a positive number of members")
  _require(isinstance(config.standardize, bool), "standardize", config.standardize,
           "must be True or False")
  _require(isinstance(config.skip_unreadable, bool), "skip_unreadable",
           config.skip_unreadable, "must be True or False")
  _require(isinstance(config.prepared_dir, str), "prepared_dir", config.prepared_dir,
           "must be a folder's path, or empty for TFDS's data dir")
  members = sweep.members(config)
  for overrides in members:  # each member's numbers, as its own run would check them
    validate(sweep.member_config(config, overrides))
  if len(members) > 1 and config.input == "stream":
    raise ValueError("config.sweep trains its members on the train set on the device "
                     "(each member draws its own epoch order): use --config.input=device "
                     "or auto.")


def validate_against_data(config, dataset, num_devices: int = 1) -> None:
  """The checks that need the data (a ``data.Dataset`` or ``DataSpec``) and the devices."""
  models.validate(config.model, dataset.image_shape, unbounded=not dataset.bounded)
  if not dataset.bounded:
    bce = [t for t in losses.parse_weights(config.losses) if t == "bce"]
    _require(not bce, "losses", config.losses,
             "must not hold 'bce' for data whose values are not in [0, 1]")
    _require(config.corruption.name == "none", "corruption.name", config.corruption.name,
             "must be 'none' for data whose values are not in [0, 1] (the corruptions "
             "clip to [0, 1])")
  if config.batch_size % num_devices:
    raise ValueError(f"config.batch_size={config.batch_size} is the global batch and must "
                     f"divide by the {num_devices} devices it is sharded over; use a "
                     f"multiple of {num_devices}.")
  if config.microbatch_size and config.microbatch_size % num_devices:
    raise ValueError(f"config.microbatch_size={config.microbatch_size} (examples per "
                     f"gradient chunk, over all devices) must divide by the {num_devices} "
                     "devices.")
  if config.batch_size > dataset.n_train:
    raise ValueError(f"config.batch_size={config.batch_size} is larger than the "
                     f"{dataset.n_train} training images of {dataset.name}.")


def checked(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` once ``validate`` passes it; its refusal as a ``ConfigError``."""
  try:
    validate(config)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(str(e)) from None
  return config


# ------------------------------------------------------------ configs from Python


def shipped_configs() -> pathlib.Path | None:
  """The folder of the experiment configs that ship with aejax
  (``experiments/configs``), found without importing it; None where it is absent."""
  spec = importlib.util.find_spec("experiments")
  if spec is None or not spec.submodule_search_locations:
    return None
  folder = pathlib.Path(next(iter(spec.submodule_search_locations))) / "configs"
  return folder if folder.is_dir() else None


def _config_file(name_or_path: str) -> tuple[pathlib.Path, list[str]]:
  """``(file, [argument])`` of ``'vanilla'``, ``'vae:iwae'`` or ``'path/to/c.py[:arg]'``."""
  name, colon, argument = str(name_or_path).partition(":")
  arguments = [argument] if colon else []
  if name.endswith(".py") or "/" in name or "\\" in name:
    path = pathlib.Path(name).expanduser()
    if not path.is_file():
      raise ConfigError(f"config file {path} does not exist.")
    return path, arguments
  folder = shipped_configs()
  known = [] if folder is None else sorted(
      p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "base"))
  if name not in known:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f'Did you mean "{close[0]}"? ' if close else ""
    raise ConfigError(f"{name!r} is not a config that ships with aejax; {hint}choose one of "
                      f"{known}, or give a config file's path.")
  return folder / f"{name}.py", arguments


def _load_file(path: pathlib.Path, arguments: list[str]) -> ml_collections.ConfigDict:
  """``get_config(*arguments)`` of the file, as ``--config=<path>[:<argument>]`` runs it."""
  spec = importlib.util.spec_from_file_location(f"aejax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} has no get_config().")
  try:
    return module.get_config(*arguments)
  except (ValueError, KeyError) as e:  # a recipe the file does not know
    raise ConfigError(f"{path}:{':'.join(arguments)}: {e}") from None


def _unknown(key: str, config: ml_collections.ConfigDict, leaf: str) -> ConfigError:
  """What ``--config.<key>`` says of a key the config lacks (experiments.main)."""
  close = difflib.get_close_matches(leaf, list(config.keys()), n=1)
  hint = (f'Did you mean "{close[0]}" instead of "{leaf}"?' if close
          else "the config has no such key")
  return ConfigError(f"{key}: unknown config key; {hint}")


def override(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
             ) -> ml_collections.ConfigDict:
  """Sets each dotted key of ``overrides`` (``{"model.code_size": 32}``) in ``config``,
  refusing a key it lacks, as the command line does, and a value of another type
  than the key's (an int for a float key is allowed; a list for a tuple key becomes
  a tuple)."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for depth, part in enumerate(parents):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise _unknown(".".join(parents[:depth + 1]), node, part)
      node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise _unknown(key, node, leaf)
    if isinstance(node[leaf], tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      node[leaf] = value
    except TypeError:
      raise ConfigError(f"config.{key}={value!r} is of type {type(value).__name__}; the key "
                        f"takes {type(node[leaf]).__name__} values, like its value "
                        f"{node[leaf]!r}.") from None
  return config


def get_config(name_or_path: str, **overrides: Any) -> ml_collections.ConfigDict:
  """An experiment's config: one that ships with aejax by name (``"vanilla"``,
  ``"conv"``, ``"vae:iwae"``: ``experiments/configs/vae.py`` with recipe ``iwae``) or a
  config file's path (``"path/to/mine.py[:arg]"``), then ``overrides``: keyword
  arguments, dotted keys through a dict (``**{"model.code_size": 32}``).

  Locked as the command line's is (no new keys), and checked (``checked``): an
  unknown key or a value the run would refuse raises ``ConfigError`` naming it.
  """
  config = _load_file(*_config_file(name_or_path))
  config.lock()
  return checked(override(config, overrides))
