"""A trained rate–distortion run as a codec: images to byte strings and back.

    codec = Codec.from_workdir("runs/codec")
    files = codec.encode(images_u8)          # [N, H, W, C] uint8 -> N files' bytes
    images = codec.decode(files)             # -> float [N, H, W, C] in [0, 1]

A file is a 31-byte header that names the model (``aejax.codec_format``;
docs/codec_format.md), then the range coder's payload; ``decode`` raises
``CodecFormatError`` for bytes this model did not write.

The run's model provides ``encode`` (integer latents ŷ), ``decode``, ``cdf_logits``
(its factorized density's per-channel cumulative) and ``latent_bits`` (its estimated
rate). A scale hyperprior also provides ``side`` (the integer side information ẑ),
``scales`` (σ of each latent of ŷ, from ẑ) and ``side_bits``: its string holds ẑ,
coded with the factorized density's tables, then ŷ, each latent coded with the
Gaussian table (``entropy_coding.ScaleTables``) of the scale nearest its σ in log.

The codec itself is the family's (``aejax.models.coding``, beside
``models/ratedistortion.py``); this module opens one from a workdir. The integer
tables are made once per checkpoint and written beside it in the
workdir (``codec_tables_<step>.npz``, the factorized density's; a hyperprior's
Gaussian tables in ``codec_scale_tables_<step>.npz``; a sweep's member i's end in
``_member<i>``); encoder and decoder read the
same files, so decoding needs the bytes, the tables and the model, nothing else (the
file's identity is theirs: a file meets only the model and tables that wrote it).
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

import hashlib
import json
import os
import pathlib

from aejax import analysis, checkpoint
from aejax.models import coding
from aejax.models.coding import Bound, Latents, to_uint8  # noqa: F401 (re-exported)


class Codec(coding.Codec):
  """``coding.Codec``, opened from a trained run's workdir by ``from_workdir``."""

  @classmethod
  def from_workdir(cls, workdir: str | pathlib.Path, member: int | None = None) -> "Codec":
    """The codec of ``workdir``'s trained run; of a sweep's member ``member`` (0 by
    default), whose tables are its own (``codec_tables_<step>_member<i>.npz``)."""
    run = analysis.load_run(workdir, member=member)
    sweep = run.meta["config"].get("sweep")
    return cls.of(run, tuple(run.meta["data"]["image_shape"]),
                  [pathlib.Path(workdir), _cache_folder(run)],
                  suffix=f"_member{member or 0}" if sweep else "")


def _cache_folder(run: analysis.Run) -> pathlib.Path:
  """This user's cache of a run's tables when its workdir cannot be written: one
  folder per workdir and parameters (their digests), so a workdir trained again, or
  reused, never meets another model's tables."""
  base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
  key = hashlib.sha256(json.dumps([str(pathlib.Path(run.workdir).absolute()),
                                   checkpoint.digests(run.variables)],
                                  sort_keys=True).encode()).hexdigest()[:20]
  return base / "aejax" / "codec_tables" / key
