"""A trained run as a Python object: what ``aejax.train`` returns and ``aejax.load``
gives back from a workdir.

    trained = aejax.load("runs/vanilla")
    codes = trained.encode(x)                 # [N, H, W, C] uint8 or float -> [N, K]
    x_hat = trained.reconstruct(x)            # float32, the data's shape and units
    trained.results["test"]["mse"], trained.history[-1]["epoch"]

It sits above the model families, the engine and the checkpoints: the parameters
come from ``analysis.load_run`` (the workdir's newest checkpoint), the figures from
``results.json`` and ``metrics.jsonl``. Inputs of any batch size run in the run's
fixed-size compiled batches; an input of another shape than the run's data is a
``DataError`` naming it, before any compute.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import TYPE_CHECKING, Any

import jax
import ml_collections
import numpy as np

from aejax import config as config_lib, data as data_lib, engine, models, sweep
from aejax import evaluate as evaluate_lib
from aejax.images import is_pixels, to_float
from aejax.workdir import WorkdirError

if TYPE_CHECKING:
  from aejax.analysis import Run


class Trained:
  """The trained model of ``workdir`` (member ``member`` of a sweep's), restored when
  first used (``load`` restores it at once, so that a missing run fails there).

  ``encode(x [N, *image_shape]) -> codes``, ``decode(codes) -> x``,
  ``reconstruct(x) -> x``: NumPy in (or JAX, or uint8 / uint16 images, scaled by
  1/255 / 1/65535 as training scaled them) and float32 NumPy out. Vectors trained with
  ``config.standardize`` go in and come out in their own units (the recorded mean
  and standard deviation are applied).
  """

  def __init__(self, workdir: str | pathlib.Path, member: int | None = None, *,
               results: dict | None = None):
    self.workdir = pathlib.Path(workdir)
    self.member = member
    self._results = results

  def __repr__(self) -> str:
    member = "" if self.member is None else f", member={self.member}"
    return f"aejax.Trained({str(self.workdir)!r}{member})"

  # ------------------------------------------------------------ the run's record

  @functools.cached_property
  def _run(self) -> Run:
    # Only here: scikit-learn and Pillow (the report's) load with it, and a run that
    # ``aejax.train`` (or the command line) returns is not restored unless used.
    from aejax import analysis  # noqa: PLC0415
    if not self.workdir.is_dir():
      raise WorkdirError(f"{self.workdir} does not exist: no run was trained there.")
    try:
      return analysis.load_run(self.workdir, self.member)
    except FileNotFoundError as e:
      raise WorkdirError(str(e)) from None

  @property
  def config(self) -> ml_collections.ConfigDict:
    """The run's config (a sweep member's own, with its overrides applied)."""
    return self._run.config

  @property
  def data(self) -> dict:
    """The record of the data it was trained on (name, source, fingerprint, shape...)."""
    return self._run.meta["data"]

  @property
  def image_shape(self) -> tuple[int, ...]:
    """``(H, W, C)`` of images, ``(D,)`` of vectors: what ``encode`` takes per example."""
    return tuple(self.data["image_shape"])

  @property
  def results(self) -> dict | None:
    """results.json (a sweep member's entry of ``members``); None before the run has
    finished (stopped, or still training)."""
    if self._results is None:
      path = self.workdir / "results.json"
      if not path.is_file():
        return None
      self._results = json.loads(path.read_text())
    if self.member is not None and "members" in self._results:
      return self._results["members"][self.member]
    return self._results

  @functools.cached_property
  def history(self) -> list[dict]:
    """metrics.jsonl: one record per epoch (train and test loss terms, seconds...)."""
    path = self.workdir / "metrics.jsonl"
    if not path.is_file():
      return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

  @property
  def members(self) -> list[Trained]:
    """A sweep's members, each a ``Trained`` of its own; empty for a single model (and
    for a member). A sweep's own ``Trained`` uses member 0's model."""
    if self.member is not None:
      return []
    count = len(sweep.members(ml_collections.ConfigDict(self._run.meta["config"])))
    return [Trained(self.workdir, i, results=self._results) for i in range(count)]

  def evaluate(self, data=None) -> dict:
    """Its checkpoint's figures, computed again as training computes results.json's
    (``aejax.evaluate.model_figures``: ``test``, ``denoising``, ``code_stats``,
    ``model_eval``), on ``data`` (a ``Dataset``; None: its config's, as
    ``data.load`` finds it), which must be the data it trained on."""
    dataset = data_lib.load(self.config) if data is None else data
    if dataset.fingerprint != self.data["fingerprint"]:
      raise data_lib.DataError(f"{self.workdir} was trained on other data than "
                               f"{dataset.location}.")
    setup = engine.setup(self.config, dataset, abstract=True)  # as experiments.evaluate_run
    evaluator = setup.evaluator(dataset.test_images, dataset.test_labels, dataset.scale)
    return evaluate_lib.model_figures(setup, self._run.variables, evaluator, dataset)

  # -------------------------------------------------------------- using the model

  def _inputs(self, x, what: str = "images") -> np.ndarray:
    """``x`` as float32 ``[N, *image_shape]`` in the units the model trained on."""
    array = _numeric(x, what)
    if array.shape[1:] != self.image_shape or array.ndim != len(self.image_shape) + 1:
      raise data_lib.DataError(
          f"{what}: {self.workdir} was trained on {_shape(self.image_shape)} "
          f"[N, {', '.join(map(str, self.image_shape))}]; got {list(array.shape)}.")
    if is_pixels(array) and len(self.image_shape) == 3:
      return to_float(array)
    array = array.astype(np.float32)
    if self._scale is not None:
      mean, std = self._scale
      array = ((array - mean) / std).astype(np.float32)
    return array

  @functools.cached_property
  def _scale(self) -> tuple[np.ndarray, np.ndarray] | None:
    """The standardisation ``(mean [D], std [D])`` of vectors trained with it."""
    if not self.data.get("standardize"):
      return None
    return (np.asarray(self.data["mean"], np.float64), np.asarray(self.data["std"], np.float64))

  @functools.cached_property
  def code_shape(self) -> tuple[int, ...]:
    """The shape of one example's code."""
    run = self._run
    x = jax.ShapeDtypeStruct((1, *self.image_shape), np.float32)
    return tuple(jax.eval_shape(lambda v, x: run.model.apply(v, x, method="encode"),
                                run.variables, x).shape[1:])

  def encode(self, x) -> np.ndarray:
    """Images ``[N, H, W, C]`` (or vectors ``[N, D]``) -> codes ``[N, *code_shape]``."""
    x = self._inputs(x)
    if not len(x):
      return np.zeros((0, *self.code_shape), np.float32)
    return np.asarray(self._run.encode(x), np.float32)

  def decode(self, codes) -> np.ndarray:
    """Codes ``[N, *code_shape]`` -> float32 images in [0, 1] (or vectors, in the
    data's own units)."""
    codes = _numeric(codes, "codes")
    if codes.shape[1:] != self.code_shape or codes.ndim != len(self.code_shape) + 1:
      raise data_lib.DataError(f"codes: {self.workdir}'s codes are "
                               f"[N, {', '.join(map(str, self.code_shape))}]; got "
                               f"{list(codes.shape)}.")
    if not len(codes):
      return np.zeros((0, *self.image_shape), np.float32)
    out = np.asarray(self._run.decode(codes.astype(np.float32)), np.float32)
    if self._scale is not None:
      mean, std = self._scale
      out = (out * std + mean).astype(np.float32)
    return out

  def reconstruct(self, x) -> np.ndarray:
    """``decode(encode(x))``."""
    return self.decode(self.encode(x))

  # ------------------------------------------------------- the family's own extras

  def sample(self, n: int, seed: int = 0) -> np.ndarray:
    """``n`` examples drawn from the model's prior (a VAE's), float32 ``[n, H, W, C]``."""
    family = models.get(self.config.model.name)
    if family.sample is None:
      raise NotImplementedError(f"model {family.name!r} has no prior to sample from; the "
                                f"families that do: {_families_with('sample')}.")
    return np.asarray(family.sample(self._run.model, self._run.variables,
                                    jax.random.key(seed), n), np.float32)

  @functools.cached_property
  def codec(self):
    """The run as a codec (a rate–distortion model's): ``codec.encode(images_u8)`` ->
    one file's bytes per image (header and payload, as ``experiments.codec`` writes
    them), ``codec.decode(files)`` -> images, ``aejax.CodecFormatError`` for bytes its
    model did not write (``aejax.codec.Codec``); its tables made in memory, nothing
    written to the workdir."""
    from aejax import codec as codec_lib  # its range coder only where it is asked for
    return codec_lib.Codec.of(self._run, self.image_shape)

  # ------------------------------------------------------------------- export

  def export(self, out: str | pathlib.Path, formats=("onnx", "jax", "folder"),
             images=None) -> dict:
    """Writes the model into folder ``out``: ``encoder``/``decoder``/``autoencoder``
    as ``.onnx`` (``"onnx"``) and ``.jax_exported`` (``"jax"``), and ``config.json``,
    ``model.safetensors`` and ``README.md`` (``"folder"``: ``aejax.load(out)`` opens
    it); each artifact is checked against this model on ``images`` (else the run's
    test set). Returns the files and their largest errors (``aejax.export.export``);
    a family that is not exported is an ``aejax.export.ExportError``."""
    from aejax import export as export_lib  # jax2onnx and onnxruntime only here
    return export_lib.export(self, out, formats, images)

  # ------------------------------------------------------------------- pickling

  def __getstate__(self) -> dict:
    """What rebuilds it without the workdir: the record, the history and the
    parameters as NumPy arrays."""
    run = self._run
    self.results  # noqa: B018 - read results.json into _results
    return {"workdir": str(self.workdir), "member": self.member, "results": self._results,
            "history": self.history, "meta": run.meta, "step": run.step,
            "variables": jax.tree.map(np.asarray, run.variables)}

  def __setstate__(self, state: dict) -> None:
    self.workdir, self.member = pathlib.Path(state["workdir"]), state["member"]
    self._results, self.history = state["results"], state["history"]
    self._run = _rebuild(self.workdir, state["meta"], state["variables"], state["step"],
                         self.member)


def load(workdir: str | pathlib.Path, member: int | None = None) -> Trained:
  """The trained run in ``workdir`` (a sweep's member ``member``, 0 by default),
  restored from its newest checkpoint: a missing or empty workdir is a
  ``WorkdirError``. ``workdir`` may be a model folder ``Trained.export`` wrote (no
  checkpoints, no data): the same encode and decode, bit for bit."""
  from aejax import export  # noqa: PLC0415 - safetensors, only for a model folder
  if export.is_folder(workdir):
    if member not in (None, 0):
      raise WorkdirError(f"{workdir} is a model folder of one model: it has no member {member}.")
    trained = Trained(workdir)
    trained.__setstate__(export.read_folder(workdir))
    return trained
  trained = Trained(workdir, member)
  trained._run  # noqa: B018 - restore now, so that a wrong workdir fails here
  return trained


# ---------------------------------------------------------------------- helpers


def _numeric(x, what: str) -> np.ndarray:
  array = np.asarray(x)
  if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                   or array.dtype == np.bool_):
    raise data_lib.DataError(f"{what}: an array of numbers is needed, got dtype {array.dtype}.")
  return array


def _shape(image_shape: tuple[int, ...]) -> str:
  return "vectors" if len(image_shape) == 1 else "images"


def _families_with(hook: str) -> list[str]:
  return [n for n in models.names() if getattr(models.get(n), hook) is not None]


def _rebuild(workdir: pathlib.Path, meta: dict, variables: Any, step: int,
             member: int | None) -> Run:
  """``analysis.load_run``'s Run, from a checkpoint's metadata and parameters held in
  memory (an unpickled Trained) rather than from the workdir."""
  config = ml_collections.ConfigDict(config_lib.upgrade(meta["config"]))
  spec = data_lib.DataSpec(image_shape=tuple(meta["data"]["image_shape"]),
                           n_train=meta["data"]["n_train"],
                           bounded=meta["data"].get("bounded", True))
  run = engine.setup(config, spec, abstract=True)
  if run.plan.members is not None:
    config = run.plan.members.configs[member or 0]
  from aejax import analysis  # noqa: PLC0415 (see Trained._run)
  return analysis.Run(workdir, config, run.model, variables, step, meta)
