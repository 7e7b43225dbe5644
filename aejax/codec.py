"""A trained rate–distortion run as a codec: images to byte strings and back.

    codec = Codec.from_workdir("runs/codec")
    strings = codec.encode(images_u8)        # [N, H, W, C] uint8 -> N byte strings
    images = codec.decode(strings)           # -> float [N, H, W, C] in [0, 1]

The run's model provides ``encode`` (integer latents), ``decode``, ``cdf_logits``
(its per-channel cumulative density) and ``latent_bits`` (its estimated rate). The
integer tables the range coder uses are made from that density once per checkpoint
and written beside it (``codec_tables_<step>.npz`` in the workdir); encoder and
decoder read the same file, so decoding needs the bytes, the tables and the model,
nothing else. ``decode(encode(x))`` is ``Run.reconstruct(x)`` bit for bit on the
machine that runs both: the latents come back exactly, and the same compiled
decoder turns them into the image.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from aejax import analysis, entropy_coding
from aejax.objective import to_float


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Float images in [0, 1] -> uint8, rounded to the nearest level."""
  return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


@dataclasses.dataclass
class Codec:
  run: analysis.Run
  tables: entropy_coding.Tables
  latent_shape: tuple[int, ...]

  @classmethod
  def from_workdir(cls, workdir: str | pathlib.Path) -> "Codec":
    run = analysis.load_run(workdir)
    for method in ("cdf_logits", "latent_bits"):
      if not hasattr(run.model, method):
        raise ValueError(f"The model in {workdir} ({run.config.model.name!r}) has no "
                         f"{method!r}: it is not a rate–distortion codec.")
    image_shape = tuple(run.meta["data"]["image_shape"])
    latent = jax.eval_shape(
        lambda v, x: run.model.apply(v, x, method="encode"), run.variables,
        jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    path = pathlib.Path(workdir) / f"codec_tables_{run.step}.npz"
    if path.exists():
      tables = entropy_coding.load(path)
    else:
      tables = entropy_coding.make_tables(
          lambda values: np.asarray(run.model.apply(
              run.variables, jnp.asarray(values, jnp.float32), method="cdf_logits")),
          latent.shape[-1])
      entropy_coding.save(tables, path)
    return cls(run, tables, tuple(latent.shape[1:]))

  def latents(self, images_u8: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> the integer latents [N, h, w, M] (float32)."""
    return self.run.encode(to_float(images_u8))

  def estimated_bits(self, latents: np.ndarray) -> np.ndarray:
    """The model's density's bits for each image's latents: [N]."""
    return self.run._batched(  # noqa: SLF001 (the Run's fixed-size compiled batches)
        jax.jit(lambda v, c: self.run.model.apply(v, c, method="latent_bits")), latents)

  def encode(self, images_u8: np.ndarray) -> list[bytes]:
    return self.encode_latents(self.latents(images_u8))

  def encode_latents(self, latents: np.ndarray) -> list[bytes]:
    return entropy_coding.encode_batch(latents, self.tables)

  def decode_latents(self, strings: list[bytes]) -> np.ndarray:
    return np.stack([entropy_coding.decode(s, self.tables, self.latent_shape)
                     for s in strings])

  def decode(self, strings: list[bytes]) -> np.ndarray:
    """N byte strings -> float images [N, H, W, C] in [0, 1]."""
    return self.run.decode(self.decode_latents(strings))
