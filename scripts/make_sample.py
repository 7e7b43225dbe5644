"""Makes the MNIST sample bundled in aejax/sample from the four full MNIST IDX files.

    python scripts/make_sample.py --mnist_dir <folder with the four .gz files>

Takes, in file order, the first 600 images of each digit from the training split
and the first 100 of each digit from the test split (6,000 and 1,000 images), writes
them as IDX files gzip-compressed with a fixed timestamp (so the output is
byte-for-byte reproducible), and records in sample.json the source files' sha256,
the indices taken and the output files' sha256.
"""

import argparse
import gzip
import hashlib
import json
import pathlib
import struct

import numpy as np

from aejax import data

PER_DIGIT = {"train": 600, "test": 100}


def write_idx_gz(path: pathlib.Path, array: np.ndarray) -> None:
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape)
  with open(path, "wb") as f:
    with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
      gz.write(header + array.astype(np.uint8).tobytes())


def sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mnist_dir", required=True)
  parser.add_argument("--out_dir", default=str(data.SAMPLE_DIR))
  args = parser.parse_args()
  src, out = pathlib.Path(args.mnist_dir), pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  full = data.read_idx_folder(src)
  manifest = {"made_by": "python scripts/make_sample.py --mnist_dir <full MNIST folder>",
              "rule": "first N images of each digit 0-9, in file order",
              "per_digit": PER_DIGIT, "source_sha256": {}, "indices": {}, "files": {}}
  for stem in data.IDX_FILES.values():
    manifest["source_sha256"][stem + ".gz"] = sha256(data.find_idx_file(src, stem))
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images = getattr(full, f"{split}_images")[..., 0]
    labels = getattr(full, f"{split}_labels")
    idx = np.sort(np.concatenate(
        [np.flatnonzero(labels == d)[:PER_DIGIT[split]] for d in range(10)]))
    manifest["indices"][split] = idx.tolist()
    for kind, array in (("images-idx3", images[idx]), ("labels-idx1", labels[idx])):
      path = out / f"{prefix}-{kind}-ubyte.gz"
      write_idx_gz(path, array)
      manifest["files"][path.name] = sha256(path)
  (out / "sample.json").write_text(json.dumps(manifest, indent=1) + "\n")
  print(f"wrote {out}: " + ", ".join(f"{k}={len(v)}" for k, v in manifest["indices"].items()))


if __name__ == "__main__":
  main()
