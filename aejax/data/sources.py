"""Where data comes from: ``load(config)`` is the one place a dataset is found, and
the sources it can read are registered plug-ins, as model families are.

A source (``Source``) declares the name ``config.dataset`` gives it (``'mnist_sample'``)
or its prefix (``'npz'`` for ``'npz:<file>'``), its reader, the config keys that reader
takes, its own checks of the name, and, for ``config.input='stream'``, where array_record
files of the data it loaded already lie (else the stream writes a copy once, keyed by
the data's fingerprint: ``aejax.data.stream``). The sources that ship with aejax
register themselves in ``aejax.data.shipped``; a user's file may call ``register``
too, and ``config.dataset`` then names its source (``tests/test_plugin_source.py``).
The list of choices in errors and docs/data.md's table (``table``) come from here.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

from aejax.data.core import DataError, Dataset


def _no_records(dataset: Dataset) -> pathlib.Path | None:
  return None


@dataclasses.dataclass(frozen=True)
class Source:
  """A registered data source.

  ``name``: what ``config.dataset`` says (``prefix=False``), or the part before the
  colon of ``'<name>:<argument>'`` (``prefix=True``; ``argument`` says what follows,
  for errors and docs). ``read(argument, config) -> Dataset``: ``argument`` is what
  follows the colon, or the whole name; ``config`` is the run's (read only the keys in
  ``keys``). ``check(argument)`` raises ValueError, naming ``config.dataset``, for an
  argument ``read`` cannot use, before any compute. ``array_records(dataset)``: the
  folder of array_record files of TFDS-serialized train examples that already hold the
  train split of a dataset ``read`` returned, for ``input='stream'``; None (the
  default): the stream writes a copy once; DataError: it cannot stream.
  ``optional``: a prefixed name may also stand alone (``'arrays'``, argument ``''``).
  ``summary``: one line for docs/data.md's table.
  """

  name: str
  read: Callable[[str, Any], Dataset]
  prefix: bool = False
  argument: str = ""
  keys: tuple[str, ...] = ()
  check: Callable[[str], None] = lambda argument: None
  array_records: Callable[[Dataset], pathlib.Path | None] = _no_records
  optional: bool = False
  summary: str = ""

  @property
  def spelled(self) -> str:
    """How ``config.dataset`` spells it: ``'cifar10'`` or ``'npz:<file.npz>'``."""
    if not self.prefix:
      return self.name
    return f"{self.name}[:{self.argument}]" if self.optional else f"{self.name}:{self.argument}"


_SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
  """Adds ``source`` under its name (a second registration of a name replaces it)."""
  if ":" in source.name or not source.name:
    raise ValueError(f"Source {source.name!r}: a name is non-empty and has no colon.")
  _SOURCES[source.name] = source
  return source


def names() -> list[str]:
  """How ``config.dataset`` spells each source, in registration order."""
  return [s.spelled for s in _SOURCES.values()]


def find(name: str) -> tuple[Source, str]:
  """``(source, argument)`` for ``config.dataset=name``, or ValueError listing them."""
  head, colon, argument = name.partition(":")
  source = _SOURCES.get(head)
  if source is not None and not source.prefix and not colon:
    return source, name
  if source is not None and source.prefix and (argument or (source.optional and not colon)):
    return source, argument
  if source is not None and source.prefix:
    raise ValueError(f"config.dataset={name!r} names no {source.argument.strip('<>')}: "
                     f"use {source.spelled}.")
  raise ValueError(f"config.dataset={name!r} is unknown; choose one of {names()}, or "
                   "register a source (aejax/data/sources.py).")


def validate_dataset_name(name: str) -> None:
  """Raises ValueError, naming ``config.dataset``, for a name ``load`` cannot serve."""
  source, argument = find(name)
  source.check(argument)


def load(config) -> Dataset:
  """Returns the dataset ``config.dataset`` names, read by its registered source."""
  source, argument = find(config.dataset)
  source.check(argument)
  return source.read(argument, config)


def array_records(name: str, dataset: Dataset) -> pathlib.Path | None:
  """Where array_record files of ``dataset``'s train split lie, loaded as
  ``config.dataset=name`` says (``Source.array_records``); None: none yet."""
  return find(name)[0].array_records(dataset)


def table(shipped: bool = False) -> str:
  """docs/data.md's table of sources, a Markdown table (a test holds the page to it);
  ``shipped``: only those whose reader is aejax's own."""
  rows = ["| `config.dataset` | reads | config keys |", "|---|---|---|"]
  for source in _SOURCES.values():
    if shipped and not getattr(source.read, "__module__", "").startswith("aejax."):
      continue
    keys = ", ".join(f"`{k}`" for k in source.keys) or "none"
    rows.append(f"| `{source.spelled}` | {source.summary} | {keys} |")
  return "\n".join(rows)


def is_arrays(name: str) -> bool:
  """Whether ``config.dataset`` names arrays a Python session held in memory
  (``readers.from_arrays``): ``'arrays'`` or ``'arrays:<name>'``."""
  from aejax.data import readers
  return name == readers.ARRAYS_PREFIX or name.startswith(readers.ARRAYS_PREFIX + ":")


TFDS_PREFIX = "tfds:"  # for code that spells a TFDS catalog name; load asks the registry
