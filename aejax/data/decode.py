"""Image files decoded in parallel, straight into a prepared copy's ``.npy`` files.

``decode_into(...)`` starts one worker per core, each a ``python`` running ``main``:
a fresh interpreter that imports NumPy, Pillow and ``aejax.data.readers`` and nothing
heavier (no JAX, whose threads make ``fork`` unsafe, and not the launching script,
which ``multiprocessing``'s spawn would import again in every worker). A worker
reads its share of the files, decodes each as ``image_files.read_image`` does, and
writes its pixels at their row of the output file (``os.pwrite``): no pixels pass
through a pipe. It reports on its standard output, one line at a time: how many it
has done, and each file it could not read, that changed since it was listed, or
whose shape differs from the first image's. The parent prints a progress line
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

from aejax.data import image_files
from aejax.data.core import DataError

PROGRESS_EVERY = 32  # files between a worker's progress lines
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
  """Decodes ``job["items"]``: ``[file, row, path, size, mtime_ns]`` each, into
  ``job["files"][file]`` at ``offsets[file] + row * row_bytes``."""
  shape, dtype = tuple(job["shape"]), np.dtype(job["dtype"])
  fds = [os.open(f, os.O_WRONLY) for f in job["files"]]
  done = 0
  for file, row, path, size, mtime in job["items"]:
    try:
      array = image_files.read_image(pathlib.Path(path), job["image_size"], job["channels"],
                                 job["bit_depth"])[0]
    except DataError as e:
      say(f"unreadable {file} {row} {json.dumps(str(e))}")
    else:
      if _stat(path) != [size, mtime]:
        say(f"changed {file} {row}")
      elif array.shape != shape or array.dtype != dtype:
        say(f"shape {file} {row} {json.dumps([list(array.shape), array.dtype.str])}")
      else:
        data = np.ascontiguousarray(array).tobytes()
        offset = job["offsets"][file] + row * len(data)
        while data:
          written = os.pwrite(fds[file], data, offset)
          data, offset = data[written:], offset + written
    done += 1
    if done % PROGRESS_EVERY == 0:
      say(f"done {PROGRESS_EVERY}")
  say(f"done {done % PROGRESS_EVERY}")
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


def decode_into(files: list[pathlib.Path], offsets: list[int],
                items: list[tuple[int, int, pathlib.Path, int, int]], *, shape: tuple, dtype,
                options: dict, what: str, skip_unreadable: bool = False
                ) -> list[tuple[int, int, str]]:
  """Decodes image files in parallel into the ``.npy`` files ``files`` (their data at
  ``offsets``). ``items``: ``(file, row, path, size, mtime_ns)``, the size and
  modification time the manifest took (a file that differs after decoding is
  reported as changed); ``options``: ``image_size``, ``channels``, ``bit_depth`` for
  ``image_files.read_image``; ``what`` names the data in the progress lines.

  Returns the unreadable files' ``(file, row, message)`` when ``skip_unreadable``;
  otherwise the first unreadable file, like a file that changed or an image of
  another shape, stops every worker at once: ``Reported``."""
  listed = [[f, r, str(p), size, mtime] for f, r, p, size, mtime in items]
  n = workers(len(listed))
  package_root = str(pathlib.Path(__file__).resolve().parents[2])
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      filter(None, [package_root, os.environ.get("PYTHONPATH")])))
  base = {"files": [str(f) for f in files], "offsets": offsets, "shape": list(shape),
          "dtype": np.dtype(dtype).str, **options}
  procs, unreadable = [], []
  try:
    for w in range(n):
      proc = subprocess.Popen([sys.executable, "-c", _WORKER], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
      procs.append(proc)
      proc.stdin.write(json.dumps({**base, "items": listed[w::n]}))
      proc.stdin.close()
    _follow(procs, len(listed), what, unreadable if skip_unreadable else None)
  finally:
    for proc in procs:  # an error or a signal: nothing may go on writing
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      proc.stdout.close()
  return unreadable


def _follow(procs, n_files: int, what: str, unreadable: list | None) -> None:
  """Reads the workers' reports until each has ended, collecting unreadable files in
  ``unreadable`` (None: raises ``Reported`` for the first, as for any other report)."""
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
      if kind == "done":
        done += int(rest)
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
