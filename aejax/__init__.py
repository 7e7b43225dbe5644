"""aejax: autoencoders in JAX/Flax, from the command line or from Python.

    import aejax
    trained = aejax.train(aejax.get_config("vanilla"), "runs/vanilla", data=x_train)
    codes = aejax.load("runs/vanilla").encode(x_test)

``aejax.train`` is the call the command line (``python -m experiments.main``) makes,
with every guarantee of the workdir (resume, lock, signals, sweeps, streaming);
``data=`` takes arrays in memory (``aejax.data.from_arrays``). ``aejax.sklearn``
holds a scikit-learn transformer. Errors a user can cause have public types,
raised before any compute: ``ConfigError``, ``DataError``, ``WorkdirError`` (and
``DataChangedError``), ``NonFiniteLossError``; a signal while training saves a
checkpoint and raises ``Stopped``; a codec refuses a file it did not write with
``CodecFormatError``; an export that cannot be made raises ``ExportError``.
docs/python.md says more.

Importing aejax is light: each name imports its module (JAX, Flax...) when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> (the module that defines it, its name there), imported on first use (PEP 562).
_NAMES = {
    "get_config": ("aejax.config", "get_config"),
    "train": ("aejax.trainer", "fit"),
    "load": ("aejax.trained", "load"),
    "Trained": ("aejax.trained", "Trained"),
    "search": ("aejax.tuner", "search"),
    "ConfigError": ("aejax.config", "ConfigError"),
    "DataError": ("aejax.data", "DataError"),
    "WorkdirError": ("aejax.workdir", "WorkdirError"),
    "DataChangedError": ("aejax.resume", "DataChangedError"),
    "NonFiniteLossError": ("aejax.step", "NonFiniteLossError"),
    "Stopped": ("aejax.preemption", "Stopped"),
    "CodecFormatError": ("aejax.codec_format", "CodecFormatError"),
    "ExportError": ("aejax.export", "ExportError"),
}
# Submodules that are part of the API.
_MODULES = ("data", "sklearn")

__all__ = [*_NAMES, *_MODULES]


def __getattr__(name: str):
  if name in _NAMES:
    module, attribute = _NAMES[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
  if name in _MODULES:
    return importlib.import_module(f"aejax.{name}")
  raise AttributeError(f"module 'aejax' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers see: the same names, imported eagerly
  from aejax import data, sklearn  # noqa: F401
  from aejax.codec_format import CodecFormatError  # noqa: F401
  from aejax.export import ExportError  # noqa: F401
  from aejax.config import ConfigError, get_config  # noqa: F401
  from aejax.data import DataError  # noqa: F401
  from aejax.preemption import Stopped  # noqa: F401
  from aejax.step import NonFiniteLossError  # noqa: F401
  from aejax.resume import DataChangedError  # noqa: F401
  from aejax.trainer import fit as train  # noqa: F401
  from aejax.trained import Trained, load  # noqa: F401
  from aejax.tuner import search  # noqa: F401
  from aejax.workdir import WorkdirError  # noqa: F401
