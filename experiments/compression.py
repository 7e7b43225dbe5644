"""Bytes per image against PSNR and SSIM: trained codecs (experiments/configs/codec.py
at several λ) against JPEG, WebP and PNG, on MNIST and on data they were not trained
on. Every byte count is a real byte string (the codec's range coder, Pillow's files).

    python -m experiments.compression --runs 'runs/codec/lambda_*,runs/codec_long/*' \
        --data_dir path/to/mnist --test_images 2000 --out docs

A curve is the runs of one folder (``runs/codec/lambda_*``) or the members of one
sweep run (``--config.sweep="losses.rate=0.2,0.05,…"``, one workdir).

Data sets: the MNIST test set; the same inverted and shifted 4 px (as docs/REPORT.md
§7); and grey 28×28 tiles of the photographs that ship with scikit-image
(``skimage.data``: camera, astronaut, coffee, chelsea, rocket, coins, moon, clock;
colour made grey with ``skimage.color.rgb2gray``), cut on a 28-pixel grid.

JPEG at each quality: the whole file and its entropy-coded scan alone (the tables
shared, as §7 counts it); WebP (Pillow's lossy encoder, method 6): the whole file and
its VP8 chunk alone (without the 20 bytes of RIFF and chunk headers); PNG lossless.
For a codec, the real bytes and the model's estimated rate beside them: the curves
and BD-rates count its payloads (the range coder's bytes), the table gives its files
too (each payload + a 31-byte header, ``aejax.codec_format``); every file is decoded
again and must give the model's reconstruction exactly.

BD-rate (Bjøntegaard): the mean difference in log bytes between two PSNR curves over
the PSNR range both cover, each curve interpolated linearly in (PSNR, log bytes)
(piecewise linear rather than Bjøntegaard's cubic: the curves here have a few
uneven points). Writes ``<out>/compression.json``, ``compression_codec.png`` (PSNR)
and ``compression_codec_ssim.png`` (``--name`` changes "compression"), and prints the
markdown table.
"""

from __future__ import annotations

import glob
import io
import json
import pathlib

import ml_collections
import numpy as np
from absl import app, flags
from PIL import Image

from aejax import analysis, codec as codec_lib, data, plots, sweep

PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "clock")
JPEG_QUALITIES = (5, 10, 20, 30, 50, 75, 90)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 50, 75, 90)
RIFF_HEADERS = 20  # "RIFF" size "WEBP" + the VP8 chunk's tag and size


def photo_tiles(size: int = 28, limit: int | None = None) -> np.ndarray:
  """Grey ``size``×``size`` tiles of scikit-image's bundled photographs, uint8
  [N, size, size, 1], each photograph cut on a ``size`` grid from its top left; with a
  ``limit``, that many of them, evenly spaced over every photograph's tiles."""
  import skimage.color  # noqa: PLC0415 (only this data set needs it)
  import skimage.data  # noqa: PLC0415
  tiles = []
  for name in PHOTOS:
    image = getattr(skimage.data, name)()
    if image.ndim == 3:
      image = np.rint(skimage.color.rgb2gray(image[..., :3]) * 255).astype(np.uint8)
    h, w = (image.shape[0] // size) * size, (image.shape[1] // size) * size
    grid = image[:h, :w].reshape(h // size, size, w // size, size).swapaxes(1, 2)
    tiles.append(grid.reshape(-1, size, size))
  tiles = np.concatenate(tiles)[..., None]
  if limit is not None and limit < len(tiles):
    tiles = tiles[np.linspace(0, len(tiles) - 1, limit).round().astype(int)]
  return tiles


def datasets(test_u8: np.ndarray, tiles: int | None = None) -> dict[str, np.ndarray]:
  return {"MNIST test": test_u8, "inverted digits": analysis.inverted(test_u8),
          "digits shifted 4 px": analysis.shifted(test_u8),
          "photo tiles": photo_tiles(limit=tiles)}


def webp_roundtrip(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
  """Pillow's lossy WebP of each grey image: (decoded uint8, file bytes [N])."""
  decoded, sizes = np.empty_like(images), np.empty(len(images), np.int64)
  for i, image in enumerate(images):
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0], mode="L").save(buffer, format="WEBP", quality=quality,
                                                  method=6)
    encoded = buffer.getvalue()
    decoded[i, ..., 0] = np.asarray(Image.open(io.BytesIO(encoded)).convert("L"))
    sizes[i] = len(encoded)
  return decoded, sizes


def png_bytes(images: np.ndarray) -> np.ndarray:
  sizes = np.empty(len(images), np.int64)
  for i, image in enumerate(images):
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0], mode="L").save(buffer, format="PNG", optimize=True)
    sizes[i] = len(buffer.getvalue())
  return sizes


def quality(images_u8: np.ndarray, decoded: np.ndarray) -> dict:
  """PSNR and SSIM of ``decoded`` (uint8, or float in [0, 1]) against the images."""
  reference = analysis.to_float(images_u8)
  decoded = analysis.to_float(decoded) if decoded.dtype == np.uint8 else decoded
  return {"psnr_db": analysis.psnr_db(reference=reference, reconstruction=decoded),
          "ssim": analysis.ssim(reference=reference, reconstruction=decoded)}


def codecs_in(workdir: str) -> dict[tuple[str, str], codec_lib.Codec]:
  """``{(series, setting): codec}`` of one workdir: a plain run is a point of the
  curve its folder's runs make (``runs/codec/lambda_0.05``: series ``codec``); a
  sweep's members are a curve of their own, named after the workdir, each member's
  setting its overrides (``rate=0.05``)."""
  path = pathlib.Path(workdir)
  first = codec_lib.Codec.from_workdir(path)
  overrides = sweep.members(ml_collections.ConfigDict(first.run.meta["config"]))
  if not overrides:
    return {(path.parent.name, path.name): first}
  name = lambda o: ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in o.items())
  return {(path.name, name(o)): first if i == 0 else codec_lib.Codec.from_workdir(path, i)
          for i, o in enumerate(overrides)}


def measure_codec(codec: codec_lib.Codec, images_u8: np.ndarray) -> dict:
  """``bytes`` counts the payloads, the rate every curve and BD-rate uses;
  ``file_bytes`` the files (each payload + the ``codec_format.HEADER_SIZE``-byte
  header), decoded as the command line decodes them."""
  latents = codec.latents(images_u8)
  strings = codec.encode_latents(latents)
  files = [codec.pack(s) for s in strings]
  decoded = codec.decode(files)
  if not np.array_equal(decoded, codec.reconstruct(latents)):
    raise AssertionError(f"{codec.run.workdir}: a byte string decodes to another image.")
  sizes = np.array([len(s) for s in strings], np.float64)
  estimated = codec.estimated_bits(latents) / 8
  return {"bytes": float(sizes.mean()), "file_bytes": float(np.mean([len(f) for f in files])),
          "estimated_bytes": float(estimated.mean()),
          "overhead_bytes": float((sizes - estimated).mean()),
          "max_bytes": float(sizes.max()), **quality(images_u8, decoded)}


def measure(images_u8: np.ndarray, codecs: dict[str, codec_lib.Codec]) -> list[dict]:
  """One row per method and setting on one data set."""
  rows = []
  for q in JPEG_QUALITIES:
    decoded, file_bytes, scan_bytes = analysis.jpeg_roundtrip(images_u8, q)
    rows.append({"method": "JPEG", "setting": f"q={q}", "bytes": float(file_bytes.mean()),
                 "scan_bytes": float(scan_bytes.mean()), **quality(images_u8, decoded)})
  for q in WEBP_QUALITIES:
    decoded, file_bytes = webp_roundtrip(images_u8, q)
    rows.append({"method": "WebP", "setting": f"q={q}", "bytes": float(file_bytes.mean()),
                 "scan_bytes": float(file_bytes.mean()) - RIFF_HEADERS,
                 **quality(images_u8, decoded)})
  rows.append({"method": "PNG", "setting": "lossless", "bytes": float(png_bytes(
      images_u8).mean()), "psnr_db": float("inf"), "ssim": 1.0})
  for (series, name), codec in codecs.items():
    rows.append({"method": series, "setting": name, **measure_codec(codec, images_u8)})
  return rows


def curve(rows: list[dict], method: str, size: str = "bytes", value: str = "psnr_db"):
  points = sorted((r[size], r[value]) for r in rows if r["method"] == method)
  return [p[0] for p in points], [p[1] for p in points]


def bd_rate(reference: tuple[list, list], test: tuple[list, list]) -> float | None:
  """Mean relative byte difference of ``test`` against ``reference`` at equal PSNR
  (curves as (bytes, PSNR)), over the PSNR range both cover; None if they do not
  overlap. -0.5: half the bytes."""
  def log_bytes_at(curve_, psnrs):
    order = np.argsort(curve_[1])
    return np.interp(psnrs, np.asarray(curve_[1])[order], np.log(np.asarray(curve_[0]))[order])
  low = max(min(reference[1]), min(test[1]))
  high = min(max(reference[1]), max(test[1]))
  if not high > low:
    return None
  psnrs = np.linspace(low, high, 200)
  return float(np.exp(np.mean(log_bytes_at(test, psnrs) - log_bytes_at(reference, psnrs))) - 1)


def psnr_gap_at_equal_bytes(reference: tuple[list, list], test: tuple[list, list]) -> list:
  """For each ``test`` point within ``reference``'s byte range: (bytes, its PSNR minus
  the reference's there, interpolated linearly in log bytes)."""
  gaps = []
  for size, psnr in zip(*test):
    if min(reference[0]) <= size <= max(reference[0]):
      gaps.append((size, psnr - float(np.interp(np.log(size), np.log(reference[0]),
                                                reference[1]))))
  return gaps


def summarise(rows: list[dict], series: str) -> dict:
  codec_curve = curve(rows, series)
  out = {}
  for name, method, size in (("JPEG scan", "JPEG", "scan_bytes"), ("JPEG file", "JPEG", "bytes"),
                             ("WebP file", "WebP", "bytes"), ("WebP VP8", "WebP", "scan_bytes")):
    reference = curve(rows, method, size)
    gaps = psnr_gap_at_equal_bytes(reference, codec_curve)
    out[name] = {"bd_rate": bd_rate(reference, codec_curve) if len(codec_curve[0]) > 1
                 else None, "psnr_gap_db": [round(g, 2) for _, g in gaps],
                 "shared_bytes": [round(b, 1) for b, _ in gaps],
                 "above_at_every_shared_rate": bool(gaps) and all(g > 0 for _, g in gaps)}
  return out


def markdown(results: dict) -> str:
  lines = []
  for title, entry in results["datasets"].items():
    lines += [f"**{title}** ({entry['images']} images)", "",
              "| method | setting | bytes/image | scan or payload bytes | estimated bytes | "
              "PSNR (dB) | SSIM |", "|---|---|---|---|---|---|---|"]
    for r in entry["rows"]:
      if "file_bytes" in r:  # a codec: its file (payload + header), then its payload
        size, scan = r["file_bytes"], f"{r['bytes']:.1f}"
      else:
        size, scan = r["bytes"], f"{r['scan_bytes']:.1f}" if "scan_bytes" in r else ""
      estimated = f"{r['estimated_bytes']:.1f}" if "estimated_bytes" in r else ""
      lines.append(f"| {r['method']} | {r['setting']} | {size:.1f} | {scan} | "
                   f"{estimated} | {r['psnr_db']:.2f} | {r['ssim']:.4f} |")
    lines += ["", "| codec | against | BD-rate | codec PSNR − theirs at equal bytes (dB) |",
              "|---|---|---|---|"]
    for series, summary in entry["summary"].items():
      for name, s in summary.items():
        bd = "–" if s["bd_rate"] is None else f"{100 * s['bd_rate']:+.1f}%"
        gaps = ", ".join(f"{g:+.2f}" for g in s["psnr_gap_db"]) or "no shared rate"
        lines.append(f"| {series} | {name} | {bd} | {gaps} |")
    lines.append("")
  return "\n".join(lines)


def measure_all(test_u8: np.ndarray, codecs: dict[tuple[str, str], codec_lib.Codec],
                tiles: int | None = None) -> dict:
  """Every method on every data set (``datasets``; ``tiles`` photo tiles, None: all),
  with each codec series' BD-rates: the content of ``<name>.json``."""
  series = sorted({s for s, _ in codecs})
  results = {"runs": {f"{s}/{name}": {"losses": c.run.config.losses, "steps": c.run.step}
                      for (s, name), c in codecs.items()}, "datasets": {}}
  for title, images in datasets(test_u8, tiles).items():
    rows = measure(images, codecs)
    results["datasets"][title] = {"images": len(images), "rows": rows,
                                  "summary": {s: summarise(rows, s) for s in series}}
  return results


def plot(results: dict, out: pathlib.Path, name: str) -> None:
  """``<name>.png`` (PSNR) and ``<name>_ssim.png``: a panel per data set, each codec
  series' real bytes beside JPEG's and WebP's two counts."""
  for value, suffix, label in (("psnr_db", "", "PSNR (dB)"), ("ssim", "_ssim", "SSIM")):
    panels = {}
    for title, entry in results["datasets"].items():
      rows = entry["rows"]
      panels[title] = {**{f"{s} (real bytes)": curve(rows, s, value=value)
                          for s in entry["summary"]},
                       "JPEG (scan only)": curve(rows, "JPEG", "scan_bytes", value),
                       "JPEG (whole file)": curve(rows, "JPEG", value=value),
                       "WebP (VP8 chunk)": curve(rows, "WebP", "scan_bytes", value),
                       "WebP (whole file)": curve(rows, "WebP", value=value)}
    plots.rate_distortion(panels, out / f"{name}{suffix}.png", ylabel=label)


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  workdirs = [w for pattern in FLAGS.runs for w in sorted(glob.glob(pattern))]
  if not workdirs:
    raise app.UsageError(f"--runs={FLAGS.runs!r} matches no workdir.")
  codecs = {key: c for w in workdirs for key, c in codecs_in(w).items()}
  config = next(iter(codecs.values())).run.config
  if FLAGS.data_dir:
    config.data_dir = FLAGS.data_dir
  results = measure_all(data.load(config).test_images[:FLAGS.test_images or None], codecs,
                        tiles=FLAGS.photo_tiles or None)
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / f"{FLAGS.name}.json").write_text(json.dumps(results, indent=1) + "\n")
  plot(results, out, f"{FLAGS.name}_codec")
  print(markdown(results))


if __name__ == "__main__":
  flags.DEFINE_list("runs", None, "Globs of trained codec workdirs; the runs in one "
                    "folder make one curve, and so do a sweep's members.")
  flags.DEFINE_string("data_dir", "", "Folder of the IDX files, if the runs' config does "
                      "not name it.")
  flags.DEFINE_integer("test_images", 0, "Measure on the first N test images (0: all).")
  flags.DEFINE_integer("photo_tiles", 0, "Measure on N photo tiles, evenly spaced over "
                       "all of them (0: all 2,026).", lower_bound=0)
  flags.DEFINE_string("out", "docs", "Folder for the JSON and the figures.")
  flags.DEFINE_string("name", "compression", "Their names: <name>.json, <name>_codec.png "
                      "(PSNR) and <name>_codec_ssim.png.")
  flags.mark_flags_as_required(["runs"])
  app.run(main)
