"""The model registry: a family is a name, its config block, a builder and what the
engine needs to know about it.

A family registers itself when its module is imported (``aejax/models/__init__.py``
imports the families that ship with aejax; a user's file may call ``register`` too).
Nothing outside ``aejax/models/`` names a family: the engine asks the registry.

The contract a family's module keeps (``build`` returns it):

- ``model.apply({"params": p}, x, rngs=...)`` with ``x`` float ``[B, H, W, C]`` in
  [0, 1] returns a dict of arrays with a leading batch axis, holding at least
  ``reconstruction`` (``x``'s shape, in [0, 1]) and ``code``, plus whatever its loss
  terms read (a VAE's ``mean`` and ``logvar``);
- ``model.encode(x) -> code`` and ``model.decode(code) -> reconstruction`` as methods
  (``apply(..., method="encode")``), for analysis;
- randomness only through Flax rngs named in ``Family.rng_streams``; the objective
  folds one key per stream from the step's key;
- variables other than ``params`` (an EMA codebook, activity counters) only in the
  collections named in ``Family.state_collections``: the train step applies the model
  with them mutable and keeps what it returns; evaluation applies it with them
  frozen (``self.is_mutable_collection(name)`` tells the module which). They are
  checkpointed with the parameters.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

ModelConfig = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Export:
  """What ``aejax.export`` writes of a family's model (docs/export.md's table).

  ``encoder``, ``decoder``: the module's methods that ``encoder.onnx`` and
  ``decoder.onnx`` compute (a codec's ``analysis``: the latents before rounding).
  ``autoencoder``: also ``decode(encode(x))`` as one file. ``traced``: a method
  replaced, for the converters only, by another of the same values written with
  operations they take (TopK's scatter as a mask). ``refused``: not exported, and
  why, in one sentence.
  """

  encoder: str = "encode"
  decoder: str = "decode"
  autoencoder: bool = True
  traced: Mapping[str, str] = dataclasses.field(default_factory=dict)
  refused: str = ""


@dataclasses.dataclass(frozen=True)
class Family:
  """A registered model family.

  ``defaults``: the keys of its ``config.model`` block besides ``name``, with default
  values; a key outside them is an error. ``build(model_config, image_shape,
  pixel_mean)`` makes the module (``pixel_mean``, the training images' mean as
  ``[H, W, C]`` in [0, 1], or None when restoring, may set its initial output).
  ``check(model_config, image_shape)`` raises ValueError naming the key for values
  ``build`` cannot use (``image_shape`` is None before the data is known).
  ``cpu_epoch_mode``: how ``epoch_mode='auto'`` runs an epoch on XLA:CPU ('scan': one
  compiled loop; 'step': one compiled step per batch, for models XLA:CPU runs slowly
  inside a loop). ``cpu_vmap_members``: on XLA:CPU a sweep's members train side by
  side in one ``vmap`` (True), or one after another (False: for convolutions, which
  XLA:CPU runs far slower vmapped, as grouped convolutions; ``config.sweep_vmap``).
  ``rng_streams``: the Flax rng names ``apply`` draws from.
  ``state_collections``: the non-parameter variable collections the model updates
  while training. ``evaluate(model, variables, dataset, key) -> {name: value}``: the
  family's own test figures (a VAE's importance-sampled NLL), written to results.json's
  ``model_eval``; ``variables`` is ``{"params": ..., <state collections>}``.
  ``figures(model, variables, dataset, key, folder) -> [file names]``: the family's own
  pictures (a VAE's samples from the prior), written into the workdir.
  ``sample(model, variables, key, n) -> [n, H, W, C]``: ``n`` examples drawn from the
  model's prior (a VAE's), for ``aejax.Trained.sample``.
  ``vectors``: it trains on vectors ``[D]`` (``image_shape == (D,)``) as well as
  images. Its output head: a sigmoid (or a clip) for data in [0, 1], the default;
  ``linear_head``: ``build`` also takes ``unbounded=True``, a linear head for data
  that is not (standardised vectors). ``export``: what ``aejax.export`` writes of it
  (``Export``).
  """

  name: str
  defaults: Mapping[str, Any]
  build: Callable[[ModelConfig, tuple[int, ...], np.ndarray | None], nn.Module]
  check: Callable[[ModelConfig, tuple[int, ...] | None], None] = lambda c, s: None
  cpu_epoch_mode: str = "scan"
  cpu_vmap_members: bool = True
  rng_streams: tuple[str, ...] = ()
  state_collections: tuple[str, ...] = ()
  evaluate: Callable[[nn.Module, Any, Any, jax.Array], dict] | None = None
  figures: Callable[..., list[str]] | None = None
  sample: Callable[[nn.Module, Any, jax.Array, int], np.ndarray] | None = None
  vectors: bool = False
  linear_head: bool = False
  export: Export = Export()


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
  """Adds ``family`` under its name (a second registration of a name replaces it)."""
  if family.cpu_epoch_mode not in ("scan", "step"):
    raise ValueError(f"Family {family.name!r}: cpu_epoch_mode must be 'scan' or 'step'.")
  if "name" in family.defaults:
    raise ValueError(f"Family {family.name!r}: 'name' is not a config key of its own.")
  _FAMILIES[family.name] = family
  return family


def names() -> list[str]:
  return sorted(_FAMILIES)


def get(name: str) -> Family:
  try:
    return _FAMILIES[name]
  except KeyError:
    raise ValueError(f"config.model.name={name!r} is unknown; choose one of {names()}, "
                     "or register a family (aejax/models/registry.py).") from None


def default_config(name: str, **overrides) -> ModelConfig:
  """The ``config.model`` block of family ``name``: its defaults, then ``overrides``."""
  config = ModelConfig({"name": name, **get(name).defaults})
  for key, value in overrides.items():
    config[key] = value  # ConfigDict refuses keys it does not have
  return config


def validate(model_config, image_shape: tuple[int, ...] | None = None,
             unbounded: bool = False) -> Family:
  """Raises ValueError naming the key for anything the family cannot build; returns it.
  ``image_shape`` ``(D,)``: vectors; ``unbounded``: data outside [0, 1]."""
  family = get(model_config.name)
  unread = sorted(set(model_config.keys()) - {"name"} - set(family.defaults))
  if unread:
    raise ValueError(
        f"config.model has keys that model {family.name!r} does not read: {unread}; "
        f"its keys are {sorted(family.defaults)}.")
  if image_shape is not None and len(image_shape) == 1 and not family.vectors:
    raise ValueError(
        f"config.model.name={family.name!r} trains on images [H, W, C]; this data holds "
        f"vectors of {image_shape[0]} features: use one of "
        f"{[n for n in names() if _FAMILIES[n].vectors]}.")
  if unbounded and not family.linear_head:
    raise ValueError(
        f"config.model.name={family.name!r} outputs values in [0, 1]; this data is not "
        f"in [0, 1] (standardised, or raw features beyond it): use one of "
        f"{[n for n in names() if _FAMILIES[n].linear_head]}.")
  family.check(_complete(model_config, family), image_shape)
  return family


def _complete(model_config, family: Family) -> ModelConfig:
  """The block with the family's defaults for keys it lacks (configs saved before a
  key existed)."""
  return ModelConfig({**family.defaults, **model_config.to_dict()})


def build(model_config, image_shape: tuple[int, ...],
          pixel_mean: np.ndarray | None = None, unbounded: bool = False) -> nn.Module:
  """The one place a model is made from a config's ``model`` block. ``unbounded``:
  the data is not in [0, 1], so the family's linear head (``Family.linear_head``)."""
  family = validate(model_config, image_shape, unbounded)
  extra = {"unbounded": True} if unbounded else {}
  return family.build(_complete(model_config, family), tuple(image_shape), pixel_mean,
                      **extra)


def rngs(model_config, key: jax.Array) -> dict[str, jax.Array]:
  """One key per rng stream the model draws from, folded from ``key``."""
  streams = get(model_config.name).rng_streams
  return {name: jax.random.fold_in(key, i) for i, name in enumerate(streams)}


@functools.lru_cache(maxsize=64)
def compiled_apply(model: nn.Module, method: str) -> Callable:
  """``jax.jit`` of ``model.apply(variables, *inputs, method=method)``, one per model
  and method. Modules compare by value, so equal models (a sweep's members, a run
  restored twice) share one function and so its compilations."""
  return jax.jit(lambda variables, *inputs: model.apply(variables, *inputs, method=method))


def batched(fn: Callable, variables: Any, *inputs: np.ndarray, batch_size: int = 1000
            ) -> np.ndarray:
  """``fn(variables, *chunks)`` (a ``compiled_apply``) over the inputs' leading axis
  (they share it) in chunks of ``batch_size``, the last one padded with zeros: one
  compilation serves any number of examples. NumPy out."""
  inputs = [np.asarray(x, np.float32) for x in inputs]
  pad = lambda chunk: np.concatenate(
      [chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
  outputs = []
  for start in range(0, len(inputs[0]), batch_size):
    chunks = [x[start:start + batch_size] for x in inputs]
    outputs.append(np.asarray(fn(variables, *map(pad, chunks)))[:len(chunks[0])])
  return np.concatenate(outputs)


def init_variables(model: nn.Module, model_config, image_shape, key: jax.Array) -> dict:
  """The model's initial variables for images of ``image_shape``: ``{"params": ...}``
  plus its state collections."""
  x = jnp.zeros((1, *image_shape), jnp.float32)
  variables = model.init({"params": key, **rngs(model_config, key)}, x)
  kept = ("params", *get(model_config.name).state_collections)
  return {name: variables[name] for name in kept if name in variables}


def _intermediate_shapes(model: nn.Module, model_config, image_shape: tuple[int, ...]):
  """The shapes of every submodule's output for one example (nothing is computed)."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)

  def intermediates(x):
    key = jax.random.key(0)
    streams = {"params": key, **rngs(model_config, key)}
    variables = model.init(streams, x)
    return model.apply(variables, x, rngs=rngs(model_config, key),
                       capture_intermediates=True, mutable=["intermediates"])[1]

  return jax.tree.leaves(jax.eval_shape(intermediates, x))


def largest_activation_bytes(model: nn.Module, model_config,
                             image_shape: tuple[int, ...]) -> int:
  """Bytes of the largest output of any submodule, for one example."""
  return max(leaf.size * leaf.dtype.itemsize
             for leaf in _intermediate_shapes(model, model_config, image_shape))


def activation_bytes(model: nn.Module, model_config, image_shape: tuple[int, ...]) -> int:
  """Bytes of all submodules' outputs together, for one example."""
  return sum(leaf.size * leaf.dtype.itemsize
             for leaf in _intermediate_shapes(model, model_config, image_shape))
