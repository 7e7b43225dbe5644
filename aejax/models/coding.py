"""A rate–distortion model as a codec: images to byte strings and back, the family's
own (``ratedistortion``); ``aejax.codec`` opens one from a trained run's workdir.

    codec = Codec.of(Bound(model, variables), image_shape)
    files = codec.encode(images_u8)          # [N, H, W, C] uint8 -> N files' bytes
    images = codec.decode(files)             # -> float [N, H, W, C] in [0, 1]

A file is a 31-byte header (``aejax.codec_format``: signature, version, image shape,
the model's identity, the payload's length and CRC-32), then the payload, the range
coder's bytes. ``encode_latents``/``decode_latents`` give and take payloads alone:
the rate figures count those.

It sits beside the family, below the engine and the analysis layer, so that the
family's evaluation measures its real bytes without reaching up to them: it needs a
model and its variables (``Bound``, or an ``analysis.Run``), the entropy coder and
the registry's compiled, batched apply. ``aejax/codec.py`` says what a string holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from aejax import codec_format, entropy_coding
from aejax.images import to_float
from aejax.models import registry


class Bound(NamedTuple):
  """A model with its variables: what a codec needs of a trained run. ``step`` names
  the tables' files; ``workdir`` is for messages."""
  model: Any
  variables: Any
  step: int = 0
  workdir: Any = None


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
  ``side_shape`` ẑ's [h', w', K], None without side information; ``image_shape``
  the [H, W, C] of the images it codes."""

  run: Any  # a model, its variables, step and workdir: ``Bound``, or an ``analysis.Run``
  tables: entropy_coding.Tables
  latent_shape: tuple[int, ...]
  scale_tables: entropy_coding.ScaleTables | None = None
  side_shape: tuple[int, ...] | None = None
  image_shape: tuple[int, ...] = ()

  def __post_init__(self):
    model = self.run.model
    self._compiled = {name: registry.compiled_apply(model, name) for name in
                      ("encode", "decode", "latent_bits", "side", "scales", "side_bits")
                      if hasattr(model, name)}

  @classmethod
  def of(cls, run, image_shape: tuple[int, ...],
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
    tables = _cached(folders, f"codec_tables_{run.step}{suffix}.npz", lambda: entropy_coding.make_tables(
        lambda values: np.asarray(run.model.apply(
            run.variables, jnp.asarray(values, jnp.float32), method="cdf_logits")),
        (side_shape or latent_shape)[-1]))
    scale_tables = None
    if side_shape is not None:
      scale_tables = _cached(folders, f"codec_scale_tables_{run.step}{suffix}.npz", lambda: (
          entropy_coding.gaussian_tables(entropy_coding.log_scales())),
          entropy_coding.ScaleTables)
    return cls(run, tables, latent_shape, scale_tables, side_shape, tuple(image_shape))

  def latents(self, images_u8: np.ndarray) -> Latents:
    """uint8 [N, H, W, C] -> the integer latents."""
    x = to_float(images_u8)
    side = None if self.side_shape is None else self._batched("side", x)
    return Latents(self._batched("encode", x), side)

  def _batched(self, method: str, *inputs: np.ndarray) -> np.ndarray:
    """The model's ``method`` in fixed-size compiled batches (``registry.batched``, as
    ``analysis.Run`` applies it: the same compilation, the same numbers)."""
    return registry.batched(self._compiled[method], self.run.variables, *inputs)

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

  @functools.cached_property
  def identity(self) -> bytes:
    """What a file names its model by (``codec_format.identity``): the parameters,
    the tables, and the image and latent shapes. Another model's, or this one's with
    other tables, differs; a string is decoded only with the identity it was written
    with."""
    leaves = jax.tree_util.tree_flatten_with_path(self.run.variables)[0]
    tables = [self.tables] + ([self.scale_tables] if self.scale_tables is not None else [])
    return codec_format.identity([
        *((jax.tree_util.keystr(path), leaf) for path, leaf in leaves),
        *((f"tables{i}.{f.name}", getattr(t, f.name))
          for i, t in enumerate(tables) for f in dataclasses.fields(t)),
        *((name, np.asarray(shape or (), np.int64)) for name, shape in (
            ("image_shape", self.image_shape), ("latent_shape", self.latent_shape),
            ("side_shape", self.side_shape)))])

  @property
  def max_payload(self) -> int:
    """A bound on a payload's bytes: every latent at a frequency of 1 (≤ 32 bits in
    constriction's 32-bit words) and escaped (16 more), plus the coder's flush."""
    latents = int(np.prod(self.latent_shape)) + int(np.prod(self.side_shape or (0,)))
    return 6 * latents + 16

  def pack(self, payload: bytes) -> bytes:
    """A payload -> its file: the header, then the payload."""
    return codec_format.pack(payload, self.identity, self.image_shape)

  def unpack(self, data: bytes, name: str = "the string") -> bytes:
    """A file -> its payload, or ``CodecFormatError`` naming ``name`` and the reason."""
    return codec_format.unpack(data, self.identity, self.image_shape, self.max_payload, name)

  def encode(self, images_u8: np.ndarray) -> list[bytes]:
    """uint8 [N, H, W, C] -> N files' bytes, each header + payload."""
    if np.asarray(images_u8).dtype != np.uint8:  # its decoded files are 8-bit images
      raise ValueError(f"The codec codes 8-bit images, uint8 [N, H, W, C]; got "
                       f"{np.asarray(images_u8).dtype}: give np.rint(x / 257).astype(np.uint8) "
                       "of 16-bit images.")
    return [self.pack(s) for s in self.encode_latents(self.latents(images_u8))]

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
    return self._batched("decode", latents.code)

  def decode(self, files: list[bytes], names: list[str] | None = None) -> np.ndarray:
    """N files' bytes (``encode``'s) -> float images [N, H, W, C] in [0, 1]. Any that
    this codec did not write raises ``CodecFormatError`` naming it (``names[i]``, by
    default ``string i``) before anything is decoded."""
    names = names or [f"string {i}" for i in range(len(files))]
    payloads = [self.unpack(f, name) for f, name in zip(files, names, strict=True)]
    try:
      latents = self.decode_latents(payloads)
    except codec_format.CodecFormatError as e:  # bytes that passed the CRC by design
      which = names[0] if len(names) == 1 else f"one of {len(names)} strings"
      raise codec_format.CodecFormatError(f"{which} is corrupted: {e}.") from None
    return self.reconstruct(latents)


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
