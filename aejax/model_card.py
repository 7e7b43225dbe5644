"""What a model folder (``export.write_folder``) says about its model, beside its
weights: the record in its ``config.json`` (the model's own config, the input spec,
the command that trains it) and its ``README.md``, the model card of the Hugging Face
hub's layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ml_collections
import numpy as np

from aejax import config as config_lib

if TYPE_CHECKING:
  from aejax.trained import Trained


def jsonable(value):
  """``json.dumps``'s ``default``: NumPy scalars and arrays as Python numbers and lists."""
  if isinstance(value, (np.generic, np.ndarray)):
    return value.tolist()
  raise TypeError(f"{type(value).__name__} is not JSON")


def own_config(trained: Trained) -> dict:
  """The model's config as a dict: a sweep member's own, with no sweep left."""
  config = trained.config.to_dict()
  if "sweep" in config:
    config["sweep"] = ""
  return config


def aejax_version() -> str:
  """The installed aejax's version, 'unknown' where it is not installed."""
  from importlib import metadata  # noqa: PLC0415
  try:
    return metadata.version("aejax")
  except metadata.PackageNotFoundError:
    return "unknown"


def input_spec(trained: Trained) -> dict:
  """What ``encode`` takes, in words a user of another runtime needs."""
  spec = {"shape": ["N", *trained.image_shape], "dtype": "float32"}
  if trained._scale is None:
    spec["scaling"] = ("uint8 pixels / 255 (16-bit uint16 pixels / 65535), so values in "
                       "[0, 1]" if len(trained.image_shape) == 3
                       else "the values as trained on, in [0, 1]")
  else:
    spec["scaling"] = ("vectors in their own units; the exported functions standardise "
                       "them with the recorded mean and std inside")
  return spec


def command(trained: Trained) -> str:
  """The command line that trains this config (its keys that differ from the named
  config's, as flags; the data folder is the user's own)."""
  config = trained.config
  flags = []
  try:
    base = config_lib.get_config(config.name).to_dict()
  except (config_lib.ConfigError, FileNotFoundError, ValueError):
    base, flags = {}, []
  mine = ml_collections.ConfigDict(own_config(trained))
  for key, value in _flat_items(mine.to_dict()):
    if key in ("sweep", "data_dir") or _same(_get(base, key), value):
      continue
    flags.append(f"--config.{key}={_flag(value)}")
  name = config.name if base else "path/to/config.py"
  return " ".join([f"python -m experiments.main --config experiments/configs/{name}.py"
                   if base else f"python -m experiments.main --config {name}",
                   "--workdir runs/" + str(config.name), *flags])


def _flat_items(tree: dict, prefix: str = ""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flat_items(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _get(tree: dict, dotted: str):
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return object()
    tree = tree[part]
  return tree


def _same(a, b) -> bool:
  """Equal, a tuple and a list of the same items too (JSON keeps lists)."""
  as_list = lambda v: list(v) if isinstance(v, (tuple, list)) else v
  return as_list(a) == as_list(b)


def _flag(value) -> str:
  if isinstance(value, (tuple, list)):
    return f"'{tuple(value)}'".replace(" ", "")
  return str(value)


def readme(trained: Trained, record: dict) -> str:
  """The folder's README.md: family, data and fingerprint, test metrics, command."""
  data, results = record["data"], record["results"] or {}
  test = results.get("test", {})
  metrics = "\n".join(f"| {k} | {v:.6g} |" for k, v in test.items()
                      if isinstance(v, (int, float))) or "| (the run had not finished) | |"
  return f"""---
library_name: aejax
tags: [autoencoder, jax, flax]
---

# {trained.config.name}: an aejax `{record['family']}` autoencoder

Trained by aejax {record['aejax_version']} for {record['step']} steps on
`{data.get('name')}` ({data.get('n_train')} training and {data.get('n_test')} test
examples of shape {data.get('image_shape')}; sha256 fingerprint of its arrays
`{data.get('fingerprint')}`).

    {record['command']}

## Test metrics

| metric | value |
|---|---|
{metrics}

## Use

    import aejax
    model = aejax.load("path/to/this/folder")
    codes = model.encode(images)     # [{', '.join(map(str, record['input']['shape']))}] float32 -> [N, {', '.join(map(str, record['code_shape']))}]
    images = model.decode(codes)

Inputs: {record['input']['scaling']}. `config.json` holds the whole config and the
input spec; `model.safetensors` the parameters and model state, keys '/'-joined.
"""
