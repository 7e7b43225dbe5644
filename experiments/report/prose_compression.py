"""The prose of sections 7, 12 and 14, bytes against PSNR (measured by
``compression``): JPEG against quantized codes, VQ-VAEs at equal bytes, and the
learned codecs' real bytes."""

from __future__ import annotations

from experiments.report.prose import epochs, or_dash, table
from experiments.report.results import Codecs, Compression, VqVae


def compression_section(r: Compression) -> str:
  return (
      "## 7. Compression against JPEG\n\n"
      "Bytes per image against PSNR on the test images, on MNIST itself and on two "
      "data sets no model was trained on (the same digits inverted, 255 − x; and "
      "moved 4 pixels right and down). JPEG: Pillow's baseline encoder at each "
      "quality; *file bytes* count the whole file it writes (headers, quantisation and "
      "Huffman tables included), *scan bytes* only the entropy-coded scan, as if the "
      "tables were shared by all images. Autoencoder: its code, each unit quantized "
      "uniformly to 8 or 4 bits between its minimum and maximum over the first "
      f"{r.probe_train:,} training images (values outside are clipped), "
      "stored as k × bits / 8 bytes with no entropy coding; the decoder and the "
      "2 × k range values are shared side information, like JPEG's standard tables, "
      "and not counted.\n\n"
      + table(["data", "method", "file bytes", "scan bytes", "PSNR dB"], r.rows)
      + "\n![rate distortion](compression.png)\n")


_VQ_VERDICTS = {"too_small": "JPEG's scan cannot be this small", None: "—",
                "above": "above", "below": "below"}


def vqvae_section(r: VqVae) -> str:
  rows = [[v["name"], f"{v['grid']}×{v['grid']}", v["num_embeddings"], f"{v['bits']:.0f}",
           v["bytes"], v["psnr_db"], v["codes_used"], or_dash(v["jpeg_scan_psnr"]),
           or_dash(v["jpeg_file_psnr"]), _VQ_VERDICTS[v["verdict"]]] for v in r.rows]
  above = r.above
  return (
      "## 12. VQ-VAE: bits per image against PSNR\n\n"
      "VQ-VAEs (`experiments/configs/vqvae.py`: EMA codebook, commitment 0.25) with "
      "smaller encoders than the config's (features as named, embedding dimension 16) "
      f"trained {', '.join(epochs(e) for e in r.epochs)} each, so that the "
      "report can afford several. An image's code is its grid of codebook indices, "
      "positions × log2 K bits with no entropy coding (the decoder and codebook are "
      "shared side information, as for the autoencoder codes of section 7). PSNR on "
      f"the {r.test_images:,} test images, beside section 7's JPEG and quantized-code "
      "points; the JPEG columns give JPEG's PSNR at the VQ-VAE's byte count, "
      "interpolated linearly in log bytes between qualities.\n\n"
      + table(["run", "grid", "K", "bits", "bytes", "PSNR dB", "codes used",
               "JPEG scan PSNR at those bytes", "JPEG file PSNR at those bytes",
               "VQ-VAE vs JPEG scan"], rows)
      + f"\nAt equal bytes, {len(above)} of the {r.comparable} VQ-VAE points inside "
      "JPEG's range lie above JPEG's entropy-coded scan"
      + (f" ({', '.join(above)})" if above else "") + "; "
      + (f"{r.below_smallest_jpeg_file} of {r.runs} are smaller than JPEG's smallest "
         f"whole file ({r.smallest_jpeg_file:.0f} bytes, headers and tables counted).\n\n"
         if r.smallest_jpeg_file is not None else "\n\n")
      + "![VQ-VAE rate distortion](vqvae_rate.png)\n")


_AGAINST = ("JPEG scan", "WebP VP8")


def _bd_and_gap(s: dict) -> tuple[str, str]:
  """A BD-rate and the PSNR gaps at equal bytes, as table cells."""
  bd = "–" if s["bd_rate"] is None else f"{100 * s['bd_rate']:+.1f}%"
  gaps, sizes = s["psnr_gap_db"], s["shared_bytes"]
  if not gaps:
    return bd, "no shared rate"
  span = lambda v, f: f"{min(v):{f}}" if min(v) == max(v) else f"{min(v):{f}} to {max(v):{f}}"
  return bd, f"{span(gaps, '+.2f')} dB at {span(sizes, '.0f')} bytes"


def codecs_section(r: Codecs) -> str:
  text = ("## 14. A learned codec in real bytes\n\n"
          "The article's warning, that JPEG compresses images vastly better than an "
          "autoencoder, tested with autoencoders trained for the rate: Ballé et al.'s "
          "factorized prior (2017) and scale hyperprior (2018) "
          "(`experiments/configs/codec.py` and `codec.py:hyperprior`), the loss squared "
          "error + λ · bits, each prior's λ values trained as one sweep run. Every byte "
          "count is a real byte string per image (range-coded with the integer tables "
          "saved beside the checkpoint, decoded again and checked equal to the model's "
          "quantized reconstruction); *estimated* is the model's own rate. JPEG and WebP "
          "count their whole file and their payload alone (JPEG's scan, WebP's VP8 "
          "chunk, as if headers and tables were shared), PNG is lossless. Measured on "
          f"the first {r.test_images:,} test images, the same inverted and shifted, "
          "and grey 28×28 tiles of scikit-image's bundled photographs "
          "(`experiments/compression.py`, which also runs this measurement on any "
          "codec runs).\n\n")
  if not r.series:
    return text + "No codec run was trained.\n"
  for name in r.series:
    run, points = r.runs[name], r.members[name]
    text += (f"`{name}`: {len(points)} λ, {epochs(run['epochs'])} each "
             f"({run['train_seconds'] / 60:.1f} min of training), on the MNIST test "
             "images:\n\n")
    text += table(["λ", "real bytes", "estimated bytes", "real − estimated", "PSNR dB",
                   "SSIM"], [[p["setting"].removeprefix("rate="), p["bytes"],
                              p["estimated_bytes"], p["overhead_bytes"], p["psnr_db"],
                              p["ssim"]] for p in points]) + "\n"
  rows = [[title, name, *(cell for against in _AGAINST for cell in _bd_and_gap(
      summary[name][against]))] for title, (_, summary) in r.datasets.items()
          for name in r.series]
  overhead = [p["overhead_bytes"] for points in r.members.values() for p in points]
  text += ("BD-rate is the mean difference in bytes at equal PSNR over the PSNR range "
           "both curves cover (negative: the codec needs fewer); the gap is the codec's "
           "PSNR minus the other's at the codec's byte counts within the other's range, "
           "interpolated in log bytes.\n\n"
           + table(["data", "codec", *(f"{h} {a}" for a in _AGAINST
                                        for h in ("BD-rate vs", "PSNR gap vs"))], rows)
           + "\n" + _codec_verdict(r)
           + f"\nEach byte string is the estimated rate plus {min(overhead):.2f}–"
           f"{max(overhead):.2f} bytes (the range coder's final word), flushes and the "
           "side information ẑ included.\n\n"
           "![codec rate distortion](codec_rate.png)\n\n"
           "![codec rate distortion, SSIM](codec_rate_ssim.png)\n")
  return text


def _codec_verdict(r: Codecs) -> str:
  """The article's sentence against the better curve, on the codec's own data and on
  the data sets it was not trained for."""
  def rank(name):  # the lowest BD-rate against JPEG's scan on MNIST, else the best gap
    scan = r.datasets["MNIST test"][1][name]["JPEG scan"]
    if scan["bd_rate"] is not None:
      return (0, scan["bd_rate"])
    return (1, -max(scan["psnr_gap_db"], default=-float("inf")))
  best = min(r.series, key=rank)
  parts = []
  for title, (_, summary) in r.datasets.items():
    scan, webp = summary[best]["JPEG scan"], summary[best]["WebP VP8"]
    if not scan["psnr_gap_db"]:
      parts.append(f"on {title} it shares no rate with JPEG's scan")
      continue
    above = scan["above_at_every_shared_rate"]
    below = max(scan["psnr_gap_db"]) < 0
    where = ("above JPEG's scan and WebP's VP8 chunk at every rate they share"
             if above and webp["above_at_every_shared_rate"] else
             "above JPEG's scan at every rate they share, not always above WebP's"
             if above else "below JPEG's scan at every rate they share" if below
             else "above JPEG's scan at some rates and below at others")
    parts.append(f"on {title} it is {where} ({_bd_and_gap(scan)[1]})")
  return (f"Verdict, for the better curve (`{best}`): " + "; ".join(parts) + ". "
          + " ".join(_sentence(title, summary[best]["JPEG scan"])
                     for title, (_, summary) in r.datasets.items()) + "\n")


def _sentence(title: str, scan: dict) -> str:
  """Whether the article's sentence holds on one data set, against JPEG's scan."""
  points = sorted(zip(scan["shared_bytes"], scan["psnr_gap_db"]))
  if not points:
    return ""
  own = title == "MNIST test"
  if all(g > 0 for _, g in points):
    return (f"On {title} the sentence fails: the codec beats JPEG at every rate they share."
            if own else f"On {title}, not trained for, the codec still beats JPEG.")
  if all(g < 0 for _, g in points):
    return f"On {title}{'' if own else ', not trained for,'} the sentence holds."
  above = [b for b, g in points if g > 0]
  below = [b for b, g in points if g < 0]
  return (f"On {title} it depends on the rate: the codec is above JPEG at "
          f"{min(above):.0f}–{max(above):.0f} bytes and below it at "
          f"{min(below):.0f}–{max(below):.0f}.")
