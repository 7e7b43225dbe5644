"""One writer for a run's metrics: metrics.jsonl, TensorBoard events and progress lines.

Every process logs its progress line; only process 0 writes files (the interface of
clu's ``create_default_writer(workdir, just_logging=jax.process_index() > 0)``,
without clu, whose writers may import TensorFlow).

metrics.jsonl holds one JSON line per epoch, and always agrees with the checkpoint a
run resumes from: ``resume`` rewrites it, atomically, to the lines before the
restored epoch plus that epoch's own record, which is saved inside the checkpoint
(so a kill between the checkpoint and the metrics write loses nothing).
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import jax
from absl import logging


class MetricWriter:

  def __init__(self, workdir: str | pathlib.Path, just_logging: bool | None = None):
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self.just_logging = jax.process_index() > 0 if just_logging is None else just_logging
    self._tensorboard = None

  def lines(self) -> list[dict]:
    """The records written so far (a partial last line, cut by a kill, is dropped)."""
    if not self.path.exists():
      return []
    records = []
    for line in self.path.read_text().splitlines():
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
    return records

  def resume(self, last_record: dict | None) -> None:
    """Makes the file hold exactly the epochs up to ``last_record``'s (the restored
    checkpoint's record; None: no checkpoint, so no lines)."""
    if self.just_logging:
      return
    epoch = 0 if last_record is None else last_record["epoch"]
    kept = [r for r in self.lines() if r.get("epoch", 0) < epoch]
    if last_record is not None:
      kept.append(last_record)
    if not kept and not self.path.exists():
      return
    tmp = self.path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, self.path)

  def write_epoch(self, record: dict, num_epochs: int) -> None:
    """Logs the epoch's line and, on process 0, appends it to the files."""
    test = record["test"]
    logging.info("epoch %d/%d  train loss %.5f  test loss %.5f  %s  %.1fs  %.0f ex/s",
                 record["epoch"], num_epochs, record["train"]["loss"], test["loss"],
                 "  ".join(f"{k} {v:.5f}" for k, v in test.items() if k != "loss"),
                 record["seconds"], record["examples_per_second"])
    if self.just_logging:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
      os.fsync(f.fileno())
    # tensorboardX's event file, written here in the caller's thread: its
    # SummaryWriter writes from a thread of its own (and once more at exit), where
    # a full disk would be a traceback rather than the run's one line.
    from tensorboardX import event_file_writer, summary  # only where files are written
    from tensorboardX.proto import event_pb2
    if self._tensorboard is None:
      folder = self.path.parent / "tensorboard"
      folder.mkdir(exist_ok=True)
      self._tensorboard = event_file_writer.EventsWriter(str(folder / "events"))
    for split in ("train", "test"):
      for name, value in record[split].items():
        self._tensorboard.write_event(event_pb2.Event(
            summary=summary.scalar(f"{split}/{name}", value), step=record["step"],
            wall_time=time.time()))
    self._tensorboard.flush()

  def close(self) -> None:
    if self._tensorboard is not None:
      tensorboard, self._tensorboard = self._tensorboard, None
      try:
        tensorboard.close()
      except OSError:
        pass  # every epoch's events were flushed in write_epoch, which said if it failed
