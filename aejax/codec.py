"""A trained rate–distortion run as a codec: images to byte strings and back.

    codec = Codec.from_workdir("runs/codec")
    strings = codec.encode(images_u8)        # [N, H, W, C] uint8 -> N byte strings
    images = codec.decode(strings)           # -> float [N, H, W, C] in [0, 1]

The run's model provides ``encode`` (integer latents ŷ), ``decode``, ``cdf_logits``
(its factorized density's per-channel cumulative) and ``latent_bits`` (its estimated
rate). A scale hyperprior also provides ``side`` (the integer side information ẑ),
``scales`` (σ of each latent of ŷ, from ẑ) and ``side_bits``: its string holds ẑ,
coded with the factorized density's tables, then ŷ, each latent coded with the
Gaussian table (``entropy_coding.ScaleTables``) of the scale nearest its σ in log.

The integer tables are made once per checkpoint and written beside it in the
workdir (``codec_tables_<step>.npz``, the factorized density's; a hyperprior's
Gaussian tables in ``codec_scale_tables_<step>.npz``; a sweep's member i's end in
``_member<i>``); encoder and decoder read the
same files, so decoding needs the bytes, the tables and the model, nothing else.
A workdir that cannot be written (read-only, another user's) is only read: its tables
go to this user's cache (``$XDG_CACHE_HOME/aejax/codec_tables/``, by default
``~/.cache``; a folder per workdir and parameters), or stay in memory.
``decode(encode(x))`` is ``Run.reconstruct(x)`` bit for bit on the machine that runs
both: the latents come back exactly, and the same compiled decoder turns them into
the image. A hyperprior's decoder also recomputes σ from ẑ with the same compiled
h_s, so it picks the encoder's tables; on another machine a σ within a rounding
error of a table scale may land on the other side of it, and the string would then
decode wrongly (docs/results/codec.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from aejax import analysis, checkpoint, entropy_coding, models
from aejax.objective import to_float


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Float images in [0, 1] -> uint8, rounded to the nearest level."""
  return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


class Latents(NamedTuple):
  """What a string holds for N images: ``code`` ŷ [N, h, w, M] and, for a
  hyperprior, ``side`` ẑ [N, h', w', K] (integers in float32)."""
  code: np.ndarray
  side: np.ndarray | None = None


def _channel_major(latents: np.ndarray) -> np.ndarray:
  """[..., h, w, C] -> [..., C, h, w]: the order a string holds them in."""
  return np.moveaxis(latents, -1, -3)


def _channel_last(latents: np.ndarray) -> np.ndarray:
  return np.moveaxis(latents, -3, -1).astype(np.float32)


@dataclasses.dataclass
class Codec:
  """``tables``: the factorized density's, of ŷ or of a hyperprior's ẑ;
  ``scale_tables`` (a hyperprior's): ŷ's; ``latent_shape`` ŷ's [h, w, M];
  ``side_shape`` ẑ's [h', w', K], None without side information."""

  run: analysis.Run
  tables: entropy_coding.Tables
  latent_shape: tuple[int, ...]
  scale_tables: entropy_coding.ScaleTables | None = None
  side_shape: tuple[int, ...] | None = None

  def __post_init__(self):
    model = self.run.model
    self._compiled = {name: models.compiled_apply(model, name) for name in
                      ("latent_bits", "side", "scales", "side_bits") if hasattr(model, name)}

  @classmethod
  def of(cls, run: analysis.Run, image_shape: tuple[int, ...],
         folder: str | pathlib.Path | list | None = None, suffix: str = "") -> "Codec":
    """The codec of ``run``'s model for images of ``image_shape``; its tables read
    from ``folder`` (or the first of a list of folders that holds them), or made from
    the model and written there (the first that can be written), their file names
    ending in ``suffix``."""
    for method in ("cdf_logits", "latent_bits"):
      if not hasattr(run.model, method):
        raise ValueError(f"The model of {run.workdir} ({type(run.model).__name__}) has no "
                         f"{method!r}: it is not a rate–distortion codec.")
    image = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    shape = lambda method: tuple(jax.eval_shape(
        lambda v, x: run.model.apply(v, x, method=method), run.variables, image).shape[1:])
    latent_shape = shape("encode")
    side_shape = shape("side") if hasattr(run.model, "side") else None
    folders = [pathlib.Path(f) for f in (folder if isinstance(folder, list) else [folder])
               if f is not None]
    tables = _cached(folders, f"codec_tables_{run.step}{suffix}.npz",
                     lambda: entropy_coding.make_tables(
                         lambda values: np.asarray(run.model.apply(
                             run.variables, jnp.asarray(values, jnp.float32),
                             method="cdf_logits")),
                         (side_shape or latent_shape)[-1]))
    scale_tables = None
    if side_shape is not None:
      scale_tables = _cached(folders, f"codec_scale_tables_{run.step}{suffix}.npz", lambda: (
          entropy_coding.gaussian_tables(entropy_coding.log_scales())),
          entropy_coding.ScaleTables)
    return cls(run, tables, latent_shape, scale_tables, side_shape)

  @classmethod
  def from_workdir(cls, workdir: str | pathlib.Path, member: int | None = None) -> "Codec":
    """The codec of ``workdir``'s trained run; of a sweep's member ``member`` (0 by
    default), whose tables are its own (``codec_tables_<step>_member<i>.npz``)."""
    run = analysis.load_run(workdir, member=member)
    sweep = run.meta["config"].get("sweep")
    return cls.of(run, tuple(run.meta["data"]["image_shape"]),
                  [pathlib.Path(workdir), _cache_folder(run)],
                  suffix=f"_member{member or 0}" if sweep else "")

  def latents(self, images_u8: np.ndarray) -> Latents:
    """uint8 [N, H, W, C] -> the integer latents."""
    x = to_float(images_u8)
    side = None if self.side_shape is None else self._batched("side", x)
    return Latents(self.run.encode(x), side)

  def _batched(self, method: str, *inputs: np.ndarray) -> np.ndarray:
    """The model's ``method`` in the Run's fixed-size compiled batches."""
    return self.run.batched(self._compiled[method], *inputs)

  def _scale_rows(self, side: np.ndarray) -> np.ndarray:
    """The Gaussian table of each latent of ŷ, from ẑ [N, h', w', K]: [N, M, h, w]."""
    return _channel_major(self.scale_tables.indexes(self._batched("scales", side)))

  def estimated_bits(self, latents: Latents) -> np.ndarray:
    """The model's densities' bits for each image's latents: [N]."""
    return self._batched("latent_bits", *(x for x in latents if x is not None))

  def side_bits(self, latents: Latents) -> np.ndarray:
    """A hyperprior's share of ``estimated_bits`` that is ẑ's: [N]."""
    return self._batched("side_bits", latents.side)

  def table_bits(self, latents: Latents) -> np.ndarray:
    """The ideal code length of each image's latents under the integer tables,
    escapes included: [N] bits, what an exact entropy coder would write."""
    if self.side_shape is None:
      return entropy_coding.table_bits(latents.code, self.tables)
    side_rows = entropy_coding.channel_rows(self.side_shape)
    return np.array([
        entropy_coding.part_bits(_channel_major(side), side_rows, self.tables)
        + entropy_coding.part_bits(_channel_major(code), rows, self.scale_tables)
        for code, side, rows in zip(latents.code, latents.side,
                                    self._scale_rows(latents.side))])

  def encode(self, images_u8: np.ndarray) -> list[bytes]:
    return self.encode_latents(self.latents(images_u8))

  def encode_latents(self, latents: Latents) -> list[bytes]:
    if self.side_shape is None:
      return entropy_coding.encode_batch(latents.code, self.tables)
    side_rows = entropy_coding.channel_rows(self.side_shape)
    strings = []
    for code, side, rows in zip(latents.code, latents.side, self._scale_rows(latents.side)):
      encoder = entropy_coding.Encoder()
      encoder.push(_channel_major(side), side_rows, self.tables)
      encoder.push(_channel_major(code), rows, self.scale_tables)
      strings.append(encoder.bytes())
    return strings

  def decode_latents(self, strings: list[bytes]) -> Latents:
    if self.side_shape is None:
      return Latents(np.stack([entropy_coding.decode(s, self.tables, self.latent_shape)
                               for s in strings]))
    # Every string's ẑ first, then σ for all of them in the encoder's compiled
    # batches, then each string's ŷ.
    decoders = [entropy_coding.Decoder(s) for s in strings]
    side_rows = entropy_coding.channel_rows(self.side_shape)
    side = _channel_last(np.stack([d.pull(side_rows, self.tables) for d in decoders]))
    code = _channel_last(np.stack([d.pull(rows, self.scale_tables) for d, rows in
                                   zip(decoders, self._scale_rows(side))]))
    return Latents(code, side)

  def reconstruct(self, latents: Latents) -> np.ndarray:
    """The decoded images of the latents: float [N, H, W, C] in [0, 1]."""
    return self.run.decode(latents.code)

  def decode(self, strings: list[bytes]) -> np.ndarray:
    """N byte strings -> float images [N, H, W, C] in [0, 1]."""
    return self.reconstruct(self.decode_latents(strings))


def _cached(folders: list[pathlib.Path], name: str, make, kind=entropy_coding.Tables):
  """The tables in the first of ``folders`` that holds ``name``, else ``make()``'s,
  written to the first folder that can be written (atomically: a codec reading them
  meanwhile sees the whole file or none); kept in memory if none can."""
  for folder in folders:
    if (folder / name).exists():
      return entropy_coding.load(folder / name, kind)
  tables = make()
  for folder in folders:
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
      folder.mkdir(parents=True, exist_ok=True)
      with open(tmp, "wb") as f:
        entropy_coding.save(tables, f)
      os.replace(tmp, folder / name)
      return tables
    except OSError:  # not writable: the next folder
      with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
  return tables


def _cache_folder(run: analysis.Run) -> pathlib.Path:
  """This user's cache of a run's tables when its workdir cannot be written: one
  folder per workdir and parameters (their digests), so a workdir trained again, or
  reused, never meets another model's tables."""
  base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
  key = hashlib.sha256(json.dumps([str(pathlib.Path(run.workdir).absolute()),
                                   checkpoint.digests(run.variables)],
                                  sort_keys=True).encode()).hexdigest()[:20]
  return base / "aejax" / "codec_tables" / key
