"""A trained rate–distortion run (experiments/configs/codec.py) as an image codec.

    python -m experiments.codec --workdir runs/codec encode in.png out.bin
    python -m experiments.codec --workdir runs/codec decode out.bin out.png
    python -m experiments.codec --workdir runs/codec batch out_folder \
        [--data_dir=path/to/mnist] [--limit=N]

``encode`` reads a grey image of the model's size (28×28 for MNIST), ``decode``
writes one. A ``.bin`` is a 31-byte header (signature, format version, image shape,
the identity of the model and its coding tables, the payload's length and CRC-32;
docs/codec_format.md) and the range coder's payload; the model and the tables come
from the workdir. ``decode`` refuses, in one ``error:`` line naming the file and
writing no image, a file this workdir's model did not write: empty, another format,
truncated, extended, corrupted, or another model's. ``batch`` codes the run's test
set, one ``<index>.bin`` file per image, decodes every file again, checks that it
gives the model's reconstruction exactly, and prints (and writes ``summary.json``)
the payload bytes per image (the rate), the file bytes, the model's estimated rate
and PSNR.
"""

import json
import pathlib
import sys

import numpy as np
from absl import app, flags
from PIL import Image, UnidentifiedImageError

from aejax import analysis, checkpoint, codec as codec_lib, codec_format, data
from aejax.workdir import WorkdirError


def _define_flags() -> None:
  flags.DEFINE_string("workdir", None, "The trained codec's workdir.")
  flags.DEFINE_string("data_dir", "", "batch: folder of the IDX files, if the run's "
                      "config does not name it.")
  flags.DEFINE_integer("member", None, "A sweep's member to code with (0 by default); "
                       "the members are listed in the run's results.json.")
  flags.DEFINE_integer("limit", 0, "batch: code only the first N test images (0: all).")
  flags.mark_flags_as_required(["workdir"])


def read_image(path: str, shape: tuple[int, ...]) -> np.ndarray:
  """A grey PNG (or any image Pillow reads; colour becomes grey) -> uint8 [1, H, W, 1]."""
  try:
    with Image.open(path) as opened:
      if opened.mode.startswith("I"):  # convert("L") would clip it to 255
        raise ValueError(f"{path} is a 16-bit image; the codec codes 8-bit images: save "
                         "it with 8 bits per sample.")
      image = np.asarray(opened.convert("L"))
  except UnidentifiedImageError:
    raise ValueError(f"{path} is not an image Pillow can read (PNG, JPEG, ...).") from None
  if image.shape != tuple(shape[:2]):
    raise ValueError(f"{path} is {image.shape[1]}×{image.shape[0]} pixels; this model codes "
                     f"{shape[1]}×{shape[0]} images.")
  return image[None, ..., None]


USAGE = ("usage: python -m experiments.codec --workdir=RUN (encode IN.png OUT.bin | "
         "decode IN.bin OUT.png | batch OUT_FOLDER)")
ARITY = {"encode": 2, "decode": 2, "batch": 1}


def check_paths(command: str | None, paths: list[str]) -> None:
  """Raises ValueError (one line) for a command line the codec cannot carry out, before
  the model is loaded: the command, its number of paths, inputs that are not files,
  outputs that are folders (or, for batch, a file)."""
  if command not in ARITY or len(paths) != ARITY[command]:
    given = " ".join([command or "", *paths]).strip() or "no command"
    raise ValueError(f"{USAGE}; got {given!r}.")
  if command == "batch":
    if pathlib.Path(paths[0]).exists() and not pathlib.Path(paths[0]).is_dir():
      raise ValueError(f"{paths[0]} is a file; batch writes a folder of strings: name a folder.")
    return
  source, target = map(pathlib.Path, paths)
  if source.is_dir() or not source.exists():
    raise ValueError(f"{source} is {'a folder' if source.is_dir() else 'missing'}; "
                     f"{command} reads one file.")
  if target.is_dir():
    raise ValueError(f"{target} is a folder; {command} writes one file: name the file.")
  if command == "encode":
    try:
      Image.open(source).close()
    except (UnidentifiedImageError, OSError):
      raise ValueError(f"{source} is not an image Pillow can read (PNG, JPEG, ...).") from None


def write_image(path: str, image: np.ndarray) -> None:
  Image.fromarray(codec_lib.to_uint8(image)[..., 0], mode="L").save(path)


def read_string(codec: codec_lib.Codec, path: str | pathlib.Path) -> bytes:
  """A ``.bin`` file's bytes, read no further than the longest file this codec writes
  and one byte more (an extended or huge file is refused without reading it all)."""
  with open(path, "rb") as f:
    return f.read(codec_format.HEADER_SIZE + codec.max_payload + 1)


def decode_file(codec: codec_lib.Codec, source: str, target: str) -> None:
  """Writes ``target``, the image of file ``source``, only if ``source`` decodes:
  else ``CodecFormatError`` naming it, and nothing is written."""
  write_image(target, codec.decode([read_string(codec, source)], names=[source])[0])


def batch(codec: codec_lib.Codec, out: pathlib.Path, data_dir: str, limit: int) -> dict:
  config = codec.run.config
  if data_dir:
    config.data_dir = data_dir
  dataset = data.load(config)
  images = dataset.test_images[:limit or None]
  latents = codec.latents(images)
  strings = codec.encode_latents(latents)
  out.mkdir(parents=True, exist_ok=True)
  paths = [out / f"{i}.bin" for i in range(len(images))]
  for path, s in zip(paths, strings):
    path.write_bytes(codec.pack(s))
  decoded = codec.decode([read_string(codec, p) for p in paths], names=list(map(str, paths)))
  reference = codec.reconstruct(latents)
  sizes = np.array([len(s) for s in strings])  # the payloads: the rate
  estimated = codec.estimated_bits(latents) / 8
  summary = {
      "images": len(images), "bytes_per_image": float(sizes.mean()),
      "file_bytes_per_image": float(np.mean([p.stat().st_size for p in paths])),
      "header_bytes": codec_format.HEADER_SIZE,
      "estimated_bytes_per_image": float(estimated.mean()),
      "overhead_bytes_per_image": float((sizes - estimated).mean()),
      "psnr_db": analysis.psnr_db(reference=analysis.to_float(images), reconstruction=decoded),
      "decodes_exactly": bool(np.array_equal(decoded, reference))}
  (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
  return summary


def main(argv):
  FLAGS = flags.FLAGS
  command, paths = (argv[1] if len(argv) > 1 else None), argv[2:]
  try:
    check_paths(command, paths)
    codec = codec_lib.Codec.from_workdir(FLAGS.workdir, FLAGS.member)
    shape = codec.run.meta["data"]["image_shape"]
    if command == "encode":
      pathlib.Path(paths[1]).write_bytes(codec.encode(read_image(paths[0], shape))[0])
    elif command == "decode":
      decode_file(codec, *paths)
    else:
      summary = batch(codec, pathlib.Path(paths[0]), FLAGS.data_dir, FLAGS.limit)
      print(json.dumps(summary, indent=2))
      if not summary["decodes_exactly"]:
        sys.exit("error: a decoded image differs from the model's reconstruction.")
  except (FileNotFoundError, ValueError, data.DataError, WorkdirError,
          checkpoint.OlderCheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except OSError as e:  # a file the command reads or writes (a read-only folder, ...)
    print(f"error: {e.filename or ''}: {e.strerror or e}".lstrip(": "), file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
