"""Image files decoded in parallel, straight into a prepared copy's ``.npy`` files.

``decode_into(...)`` starts one worker per core, each a ``python`` running ``main``:
a fresh interpreter that imports NumPy, Pillow and ``aejax.data.readers`` and nothing
heavier (no JAX, whose threads make ``fork`` unsafe, and not the launching script,
which ``multiprocessing``'s spawn would import again in every worker). A worker
reads its share of the files, decodes each as ``image_files.read_image`` does, and
writes them, a chunk of consecutive rows at a time, at their place in the output
file (``os.pwrite``): no pixels pass through a pipe. It reports on its standard
output, one line at a time: each chunk written, with its blocks' checksums, and each
file it could not read, that changed since it was listed, or whose shape differs
from the first image's. The parent prints a progress line
(images done, images/s, time left) every few seconds, and kills every worker if it
stops early (an error, a signal), so that nothing keeps writing.
"""

from __future__ import annotations

import json
import os
import pathlib
import selectors
import subprocess
import sys
import time
from typing import Callable

import numpy as np
from absl import logging

from aejax.data import image_files, rows
from aejax.data.core import DataError

PROGRESS_SECONDS = 5.0  # between the parent's log lines


def workers(n_files: int) -> int:
  """One worker per core the process may use, none idle for lack of files."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return max(1, min(cores or 1, -(-n_files // 64)))


def _stat(path: str) -> list[int]:
  stat = os.stat(path)
  return [stat.st_size, stat.st_mtime_ns]


# ------------------------------------------------------------------ the worker
def _work(job: dict, say: Callable[[str], None]) -> None:
  """Decodes ``job["chunks"]``: ``[file, first row, [[path, size, mtime_ns], ...]]``
  each, consecutive rows of ``job["files"][file]`` from ``first``, written with one
  ``pwrite`` a chunk. A chunk starts on a checksum block's first row and holds whole
  blocks (the file's last may end short), so the worker reports each block's CRC-32
  (``rows.checksums``); it adds the train file's (file 0's) pixels into a float64
  sum, saved at ``job["sum_path"]`` when it ends. A row it could not write (an
  unreadable, changed or misshapen file, reported) stays zero."""
  shape, dtype = tuple(job["shape"]), np.dtype(job["dtype"])
  fds = [os.open(f, os.O_WRONLY) for f in job["files"]]
  total = np.zeros(shape, np.float64)
  for file, first, entries in job["chunks"]:
    chunk = np.zeros((len(entries), *shape), dtype)
    for k, (path, size, mtime) in enumerate(entries):
      row = first + k
      try:
        array = image_files.read_image(pathlib.Path(path), job["image_size"],
                                       job["channels"], job["bit_depth"])[0]
      except DataError as e:
        say(f"unreadable {file} {row} {json.dumps(str(e))}")
        continue
      if _stat(path) != [size, mtime]:
        say(f"changed {file} {row}")
      elif array.shape != shape or array.dtype != dtype:
        say(f"shape {file} {row} {json.dumps([list(array.shape), array.dtype.str])}")
      else:
        chunk[k] = array
    data, offset = chunk.tobytes(), job["offsets"][file] + first * chunk[0].nbytes
    while data:
      written = os.pwrite(fds[file], data, offset)
      data, offset = data[written:], offset + written
    if file == 0:
      total += chunk.sum(0, dtype=np.float64)
    say(f"chunk {file} {first} {len(entries)} {json.dumps(rows.checksums(chunk).tolist())}")
  np.save(job["sum_path"], total)
  for fd in fds:
    os.close(fd)


def main() -> None:
  """A worker: decodes the job on its standard input (``_work``)."""
  job = json.loads(sys.stdin.read())
  out = sys.stdout
  def say(line: str) -> None:
    out.write(line + "\n")
    out.flush()
  try:
    _work(job, say)
  except OSError as e:  # a full disk: the parent says it in one line
    say(f"oserror {e.errno} {json.dumps(str(e))}")
    sys.exit(1)
  say("end")


# ------------------------------------------------------------------ the parent
class Reported(Exception):
  """A worker's report that ends the decoding: ``kind`` ('unreadable', 'changed' or
  'shape'), the output ``file`` and ``row``, and its ``detail`` (the error's message;
  the shape found)."""

  def __init__(self, kind: str, file: int, row: int, detail):
    super().__init__(kind, file, row, detail)
    self.kind, self.file, self.row, self.detail = kind, file, row, detail


def chunks_of(items: list[tuple], block_rows: int, target: int = 64) -> list[list]:
  """``items`` (``(file, row, path, size, mtime_ns)``, each file's rows in order from 0)
  cut into chunks of consecutive rows of one file, each of whole checksum blocks of
  ``block_rows`` rows, about ``target`` rows: ``[file, first row, entries]``."""
  per = block_rows * max(1, target // block_rows)
  chunks = []
  for file, row, path, size, mtime in items:
    if row % per == 0:
      chunks.append([file, row, []])
    chunks[-1][2].append([str(path), size, mtime])
  return chunks


def decode_into(files: list[pathlib.Path], offsets: list[int], chunks: list[list], *,
                shape: tuple, dtype, options: dict, what: str,
                on_chunk: Callable[[int, int, int, list[int]], None],
                skip_unreadable: bool = False) -> tuple[list, np.ndarray]:
  """Decodes image files in parallel into the ``.npy`` files ``files`` (their data at
  ``offsets``). ``chunks``: ``chunks_of``'s; ``options``: ``image_size``,
  ``channels``, ``bit_depth`` for ``image_files.read_image``; ``what`` names the data
  in the progress lines. ``on_chunk(file, first, count, checksums)`` is called as
  each chunk is written (its blocks' CRC-32s). A file whose size or modification time
  (the manifest's, in each entry) differs after decoding is reported as changed.

  Returns ``(unreadable, train pixel sum)``: the unreadable files' ``(file, row,
  message)`` when ``skip_unreadable``; otherwise the first unreadable file, like a
  file that changed or an image of another shape, stops every worker at once:
  ``Reported``."""
  n = workers(sum(len(c[2]) for c in chunks))
  package_root = str(pathlib.Path(__file__).resolve().parents[2])
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      filter(None, [package_root, os.environ.get("PYTHONPATH")])))
  sums = [pathlib.Path(files[0]).with_name(f".pixel_sum.{w}.npy") for w in range(n)]
  base = {"files": [str(f) for f in files], "offsets": offsets, "shape": list(shape),
          "dtype": np.dtype(dtype).str, **options}
  procs, unreadable = [], []
  try:
    for w in range(n):
      proc = subprocess.Popen([sys.executable, "-c", _WORKER], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
      procs.append(proc)
      proc.stdin.write(json.dumps({**base, "chunks": chunks[w::n], "sum_path": str(sums[w])}))
      proc.stdin.close()
    _follow(procs, sum(len(c[2]) for c in chunks), what,
            unreadable if skip_unreadable else None, on_chunk)
    total = sum(np.load(path) for path in sums)
  finally:
    for proc in procs:  # an error or a signal: nothing may go on writing
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      proc.stdout.close()
    for path in sums:
      path.unlink(missing_ok=True)
  return unreadable, total


def _follow(procs, n_files: int, what: str, unreadable: list | None, on_chunk) -> None:
  """Reads the workers' reports until each has ended, collecting unreadable files in
  ``unreadable`` (None: raises ``Reported`` for the first, as for any other report)
  and passing each written chunk to ``on_chunk``."""
  selector = selectors.DefaultSelector()
  for proc in procs:
    selector.register(proc.stdout, selectors.EVENT_READ, proc)
  done, start, said, open_ = 0, time.monotonic(), time.monotonic(), len(procs)
  ended = set()
  while open_:
    for key, _ in selector.select(timeout=1.0):
      line = key.fileobj.readline()
      if not line:
        selector.unregister(key.fileobj)
        open_ -= 1
        proc = key.data
        if proc.wait() != 0 and id(proc) not in ended:
          raise DataError(f"Decoding {what} failed: a worker exited with status "
                          f"{proc.returncode}.")
        continue
      kind, _, rest = line.rstrip("\n").partition(" ")
      if kind == "chunk":
        file, first, count, sums = rest.split(" ", 3)
        on_chunk(int(file), int(first), int(count), json.loads(sums))
        done += int(count)
      elif kind == "end":
        ended.add(id(key.data))
      elif kind == "oserror":
        number, _, message = rest.partition(" ")
        raise OSError(int(number), json.loads(message))
      else:
        file, row, detail = (rest.split(" ", 2) + [""])[:3]
        file, row, detail = int(file), int(row), json.loads(detail or "null")
        if kind == "unreadable" and unreadable is not None:
          unreadable.append((file, row, detail))
        else:
          raise Reported(kind, file, row, detail)
    now = time.monotonic()
    if now - said >= PROGRESS_SECONDS and done:
      rate = done / (now - start)
      logging.info("Preparing %s: %d of %d images, %.0f images/s, %.0f s left.", what, done,
                   n_files, rate, (n_files - done) / rate)
      said = now


_WORKER = "from aejax.data.decode import main; main()"
