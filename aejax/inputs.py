"""How training batches reach the step (``config.input``), behind one interface.

``open_input(run, dataset, first_epoch, saved)`` gives a ``DeviceInput`` or a
``StreamInput``; both have ``train_epoch(state, epoch) -> (state, history)`` (the
per-step metrics on the host, stacked over steps) and ``position()`` (what a
checkpoint keeps to resume the input where it stood). ``train.train_and_evaluate``
and the benchmark train through it alike.

- 'device' keeps the uint8 train set replicated on every device and gathers each
  batch there, by an order drawn on the device: no host↔device traffic inside an
  epoch.
- 'stream' reads batches from array_record files in background threads
  (``aejax.data.stream``), each process only its rows of each global batch, several
  batches per compiled call. Its order is the device path's permutation computed on
  the host, so both train on the same batches.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging

from aejax import sharding
from aejax import step as step_lib


class InputError(Exception):
  """A checkpoint's saved input position disagrees with its train state."""


class DeviceInput:
  """The train set on every device; an epoch is one call (or one call per step)."""

  def __init__(self, run, train_images: np.ndarray):
    self._run = run
    self._images = sharding.put(run.mesh, train_images)

  def train_epoch(self, state, epoch: int):
    del epoch  # the order follows state.step
    program, keys = self._run.program, self._run.keys
    order = program.start_epoch(state, keys.shuffle)
    state, history = program.run_epoch(state, self._images, order, keys.noise)
    return state, jax.device_get(history)

  def position(self) -> dict:
    return {"mode": "device"}


class StreamInput:
  """The train set read from array_record files, ``chunk_batches`` batches a call."""

  def __init__(self, run, dataset, first_epoch: int = 0, saved: dict | None = None):
    from aejax.data import stream  # grain and TFDS: only when streaming
    self._run = run
    plan = run.plan
    self.rows = sharding.local_rows(run.mesh, run.config.batch_size)
    folder = stream.array_record_folder(dataset)
    layout = stream.Layout(steps=plan.steps_per_epoch, rows=self.rows,
                           chunk_batches=plan.chunk_batches,
                           num_epochs=run.config.num_epochs)
    self.feed = stream.Stream(folder, stream.train_positions(folder, dataset),
                              dataset.image_shape, self.epoch_order, layout,
                              dataset.train_images.dtype)
    self.feed.start(first_epoch, saved and saved["iterator"])
    logging.info("Streaming the train set from %s (%d batches per call; this process feeds "
                 "rows %d:%d of each batch), from epoch %d, batch 1%s.", folder,
                 plan.chunk_batches, self.rows.start, self.rows.stop, first_epoch + 1,
                 f" (iterator state {saved['iterator']})" if saved else "")

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s batch order, int32 ``[steps, batch_size]``, computed on this
    host's CPU with the device path's function and key (``step.epoch_permutation``),
    so that streaming draws exactly the batches the device path gathers, on any
    number of hosts."""
    run = self._run
    cpu = jax.local_devices(backend="cpu")[0]
    key = jax.device_put(run.keys.shuffle.addressable_data(0), cpu)
    permutation = jax.jit(step_lib.epoch_permutation, static_argnums=(2, 3))
    return np.asarray(permutation(key, epoch * run.plan.steps_per_epoch, run.plan.n_train,
                                  run.config.batch_size))

  def train_epoch(self, state, epoch: int):
    """Each chunk's transfer and dispatch return at once, so the next chunk is read
    while the device trains on this one."""
    run, stacked = self._run, self._run.plan.epoch_mode == "scan"
    histories = []
    for chunk in self.feed.epoch(epoch):
      batches = sharding.put_local_batches(run.mesh, chunk, run.config.batch_size, stacked)
      state, history = run.program.run_batches(state, batches, run.keys.noise)
      histories.append(history)
    return state, jax.tree.map(lambda *xs: np.concatenate(xs), *jax.device_get(histories))

  def position(self) -> dict:
    return {"mode": "stream", "stream": self.feed.position()}


def open_input(run, dataset, first_epoch: int = 0, saved: dict | None = None):
  """``run.plan.input``'s input over ``dataset``'s train split, at ``first_epoch``'s
  first batch. ``saved``: a checkpoint's ``position()``; a stream resumes where it
  says (checked against ``first_epoch``)."""
  if run.plan.input == "device":
    return DeviceInput(run, dataset.train_images)
  saved = (saved or {}).get("stream")
  # A position saved with other chunks (another aejax) is recomputed from the epoch.
  if saved and saved.get("chunk_batches") != run.plan.chunk_batches:
    saved = None
  if saved is not None and (saved["epoch"], saved["batch"]) != (first_epoch, 0):
    raise InputError(
        f"The checkpoint's input stream stands at epoch {saved['epoch'] + 1}, batch "
        f"{saved['batch'] + 1}, but its train state at epoch {first_epoch + 1}: the "
        "checkpoint is inconsistent. Use a new --workdir.")
  return StreamInput(run, dataset, first_epoch, saved)
