"""Sections 7, 12 and 14, bytes against PSNR: JPEG against quantized autoencoder codes
on MNIST and two shifted data sets, VQ-VAEs against JPEG at equal bytes, and the
learned codecs' real bytes against JPEG and WebP (experiments/compression.py's
measurement)."""

from __future__ import annotations

import numpy as np

from aejax import analysis, plots
from experiments import compression as codec_measure
from experiments.report.context import Context
from experiments.report.plan import CODEC_RUNS
from experiments.report.results import Codecs, Compression, VqVae


def against_jpeg(ctx: Context) -> Compression:
  """JPEG at each quality and the compressors' codes at 8 and 4 bits, on each data
  set; writes compression.png. ``panels``: its curves, ``{data set: {method: (bytes,
  PSNRs)}}``, which section 12 draws again."""
  datasets = {"MNIST test": ctx.test_u8, "inverted digits": analysis.inverted(ctx.test_u8),
              "digits shifted 4 px": analysis.shifted(ctx.test_u8)}
  compressors = [f"vanilla_k{k}" for k in ctx.plan.compression_sizes] + ["deep"]
  ranges = {name: analysis.code_range(ctx.codes(name, "probe_train")) for name in compressors}
  panels, numbers, rows = {}, {}, []
  for title, images_u8 in datasets.items():
    images = analysis.to_float(images_u8)
    series, entries = {}, []
    jpeg_file, jpeg_scan = ([], []), ([], [])
    for quality in ctx.plan.jpeg_qualities:
      decoded, file_bytes, scan_bytes = analysis.jpeg_roundtrip(images_u8, quality)
      psnr = analysis.psnr_db(reference=images, reconstruction=analysis.to_float(decoded))
      jpeg_file[0].append(float(file_bytes.mean())), jpeg_file[1].append(psnr)
      jpeg_scan[0].append(float(scan_bytes.mean())), jpeg_scan[1].append(psnr)
      entries.append({"method": f"JPEG q={quality}", "file_bytes": float(file_bytes.mean()),
                      "scan_bytes": float(scan_bytes.mean()), "psnr_db": psnr})
    series["JPEG (whole file)"] = jpeg_file
    series["JPEG (scan only)"] = jpeg_scan
    for bits in (8, 4):
      sizes, psnrs = [], []
      for name in compressors:
        run = ctx.runs[name]
        codes = analysis.flat(run.encode(images))
        low, high = ranges[name]
        decoded = run.decode(analysis.dequantize(analysis.quantize(codes, low, high, bits),
                                                 low, high, bits))
        psnr = analysis.psnr_db(reference=images, reconstruction=decoded)
        size = analysis.code_bytes(codes.shape[1], bits)
        sizes.append(size), psnrs.append(psnr)
        entries.append({"method": f"{name} {bits}-bit code", "file_bytes": size,
                        "scan_bytes": size, "psnr_db": psnr})
      order = np.argsort(sizes)
      series[f"autoencoder, {bits}-bit code"] = ([sizes[i] for i in order],
                                                 [psnrs[i] for i in order])
    panels[title] = series
    numbers[title] = entries
    rows += [[title, e["method"], e["file_bytes"], e["scan_bytes"], e["psnr_db"]]
             for e in entries]
  plots.rate_distortion(panels, ctx.out / "compression.png")
  return Compression(numbers={"compression": numbers}, rows=rows, panels=panels,
                     probe_train=ctx.plan.probe_train)


def vqvae(ctx: Context, panels: dict) -> VqVae:
  """Each VQ-VAE run's bits per image and PSNR, beside JPEG's PSNR at its byte count
  from ``panels`` (section 7's); writes vqvae_rate.png. A row's verdict is 'above' or
  'below' JPEG's scan, 'too_small' for fewer bytes than JPEG's smallest scan, or None
  where there is no JPEG point to compare with."""
  names = [n for n in ctx.results if n.startswith("vqvae_")]
  mnist = panels.get("MNIST test", {})
  jpeg_scan = mnist.get("JPEG (scan only)", ([], []))
  jpeg_file = mnist.get("JPEG (whole file)", ([], []))
  points, rows, numbers = [], [], {}
  for name in names:
    run, result = ctx.runs[name], ctx.results[name]
    model_eval = result["model_eval"]
    psnr = analysis.psnr_db(reference=ctx.test, reconstruction=run.reconstruct(ctx.test))
    size = model_eval["bits_per_image"] / 8
    scan = interpolate_log(size, *jpeg_scan)
    whole = interpolate_log(size, *jpeg_file)
    numbers[name] = {"features": list(run.config.model.features),
                     "num_embeddings": model_eval["num_embeddings"],
                     "positions": model_eval["positions"],
                     "bits_per_image": model_eval["bits_per_image"], "bytes_per_image": size,
                     "psnr_db": psnr, "codes_used": model_eval["codes_used"],
                     "codebook_perplexity": model_eval["codebook_perplexity"],
                     "epochs": result["epochs"], "train_seconds": result["train_seconds"],
                     "jpeg_scan_psnr_at_bytes": scan, "jpeg_file_psnr_at_bytes": whole}
    verdict = ("too_small" if scan is None and jpeg_scan[0] and size < min(jpeg_scan[0])
               else None if scan is None else "above" if psnr > scan else "below")
    rows.append({"name": name, "grid": int(round(model_eval["positions"] ** 0.5)),
                 "num_embeddings": model_eval["num_embeddings"],
                 "bits": model_eval["bits_per_image"], "bytes": size, "psnr_db": psnr,
                 "codes_used": model_eval["codes_used"], "jpeg_scan_psnr": scan,
                 "jpeg_file_psnr": whole, "verdict": verdict})
    points.append((size, psnr))
  panel = dict(mnist)
  if points:
    points.sort()
    panel["VQ-VAE (positions × log2 K bits)"] = ([p[0] for p in points],
                                                [p[1] for p in points])
  plots.rate_distortion({"MNIST test": panel}, ctx.out / "vqvae_rate.png")
  comparable = [n for n in names if numbers[n]["jpeg_scan_psnr_at_bytes"] is not None]
  smallest_file = min(jpeg_file[0]) if jpeg_file[0] else None
  return VqVae(
      numbers={"vqvae": numbers}, rows=rows,
      above=[n for n in comparable
             if numbers[n]["psnr_db"] > numbers[n]["jpeg_scan_psnr_at_bytes"]],
      comparable=len(comparable), runs=len(names),
      epochs=sorted({ctx.results[n]["epochs"] for n in names}), test_images=len(ctx.test),
      smallest_jpeg_file=smallest_file,
      below_smallest_jpeg_file=None if smallest_file is None else sum(
          numbers[n]["bytes_per_image"] < smallest_file for n in names))


def interpolate_log(size: float, sizes: list[float], values: list[float]) -> float | None:
  """``values`` at ``size``, linear in log size between the two points around it;
  None outside their range."""
  points = sorted(zip(sizes, values))
  for (a, va), (b, vb) in zip(points, points[1:]):
    if a <= size <= b:
      t = 0.0 if b == a else (np.log(size) - np.log(a)) / (np.log(b) - np.log(a))
      return float(va + t * (vb - va))
  return None


def codecs(ctx: Context) -> Codecs:
  """Each codec run's λ sweep as one curve of real byte strings (every one decoded
  again and checked against the model's reconstruction) beside JPEG, WebP and PNG on
  the four data sets of ``experiments.compression``; writes codec_rate.png and
  codec_rate_ssim.png. ``members``: each curve's points on the MNIST test images."""
  names = [n for n in CODEC_RUNS if n in ctx.results]
  if not names:
    return Codecs(numbers={"codecs": {}}, series=[], members={})
  found = {key: c for n in names for key, c in codec_measure.codecs_in(ctx.runs_dir / n).items()}
  results = codec_measure.measure_all(ctx.test_u8[:ctx.plan.codec_test_images], found,
                                      tiles=ctx.plan.codec_tiles)
  codec_measure.plot(results, ctx.out, "codec_rate")
  mnist = results["datasets"]["MNIST test"]
  members = {}
  for name in names:
    points = sorted((r for r in mnist["rows"] if r["method"] == name),
                    key=lambda r: r["bytes"])
    members[name] = [{"setting": r["setting"], "bytes": r["bytes"],
                      "estimated_bytes": r["estimated_bytes"],
                      "overhead_bytes": r["overhead_bytes"],
                      "overhead_fraction": r["overhead_bytes"] / r["bytes"],
                      "psnr_db": r["psnr_db"], "ssim": r["ssim"]} for r in points]
  runs = {name: {"epochs": ctx.results[name]["epochs"],
                 "train_seconds": ctx.results[name]["train_seconds"],
                 "members": len(members[name]), "losses": ctx.results[name]["losses"],
                 "sweep": ctx.results[name]["sweep"]} for name in names}
  numbers = {"runs": runs, "members": members,
             "datasets": {t: {"images": e["images"], "summary": e["summary"],
                              "rows": e["rows"]} for t, e in results["datasets"].items()}}
  return Codecs(
      numbers={"codecs": numbers}, series=names, members=members, runs=runs,
      datasets={t: (e["images"], e["summary"]) for t, e in results["datasets"].items()},
      test_images=mnist["images"])
