"""How training batches reach the step (``config.input``), behind one interface.

``open_input(run, dataset, step, saved)`` gives a ``DeviceInput`` or a
``StreamInput``; both have ``chunks(state, epoch, first)``, which trains an epoch one
chunk of steps at a time (``trainer.train_and_evaluate`` may save or stop between two),
``train_epoch(state, epoch) -> (state, history)`` (the per-step metrics on the host,
stacked over steps; the benchmark's) and ``position()`` (what a checkpoint keeps to
resume the input where it stood).

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


def chunk_lengths(steps: int, chunk: int, first: int = 0) -> list[int]:
  """The chunks of an epoch of ``steps`` steps from step ``first`` of it: cut at the
  multiples of ``chunk`` from the epoch's start, so every run cuts them alike."""
  cuts = [first, *range((first // chunk + 1) * chunk, steps, chunk), steps]
  return [b - a for a, b in zip(cuts, cuts[1:]) if b > a]


class _Input:

  def chunks(self, state, epoch: int, first: int = 0):
    """Trains ``epoch`` from its step ``first``, one chunk (``plan.chunk_steps``) at a
    time: yields ``(state, history)`` as soon as each chunk is dispatched (the
    history on the device). The next chunk starts only when the caller asks for it,
    so the caller may save the state it was given, or stop, in between."""
    raise NotImplementedError

  def train_epoch(self, state, epoch: int):
    """The whole epoch: ``(state, history)`` with the history on the host, stacked
    over steps."""
    histories = []
    for state, history in self.chunks(state, epoch):
      histories.append(history)
    return state, jax.tree.map(lambda *xs: np.concatenate(xs), *jax.device_get(histories))


class DeviceInput(_Input):
  """The train set on every device; each chunk gathers its batches there."""

  def __init__(self, run, train_images: np.ndarray):
    self._run = run
    self._images = sharding.put(run.mesh, train_images)

  def chunks(self, state, epoch: int, first: int = 0):
    del epoch  # the order and the batches follow state.step
    program, keys, plan = self._run.program, self._run.keys, self._run.plan
    order = program.start_epoch(state, keys.shuffle)
    for steps in chunk_lengths(plan.steps_per_epoch, plan.chunk_steps, first):
      state, history = program.run_chunk(state, self._images, order, keys.noise, steps)
      yield state, history

  def position(self) -> dict:
    return {"mode": "device"}


class StreamInput(_Input):
  """The train set read from array_record files, ``chunk_steps`` batches a call."""

  def __init__(self, run, dataset, step: int = 0, saved: dict | None = None):
    from aejax.data import stream  # grain and TFDS: only when streaming
    self._run = run
    plan = run.plan
    self.rows = sharding.local_rows(run.mesh, run.config.batch_size)
    layout = stream.Layout(steps=plan.steps_per_epoch, rows=self.rows,
                           chunk_batches=plan.chunk_steps,
                           num_epochs=run.config.num_epochs)
    images = dataset.train_images
    if isinstance(images, np.ndarray):  # in memory: read from array_record files
      folder = stream.array_record_folder(dataset, run.config.dataset)
      read = stream.records_reader(folder, stream.train_positions(folder, dataset),
                                   dataset.image_shape, images.dtype)
    else:  # a prepared copy, or shards, on disk: read rows from there
      folder, read = getattr(images, "path", images), images.take
    self.feed = stream.Stream(read, self.epoch_order, layout)
    epoch, batch = divmod(step, plan.steps_per_epoch)
    self.feed.start(epoch, batch, saved and saved["iterator"])
    logging.info("Streaming the train set from %s (%d batches per call; this process feeds "
                 "rows %d:%d of each batch), from epoch %d, batch %d%s.", folder,
                 plan.chunk_steps, self.rows.start, self.rows.stop, epoch + 1, batch + 1,
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

  def chunks(self, state, epoch: int, first: int = 0):
    """Each chunk's transfer and dispatch return at once, so the next chunk is read
    while the device trains on this one. The stream stands where the last chunk
    left it (``first`` is checked by ``open_input``)."""
    del first
    run, stacked = self._run, self._run.plan.epoch_mode == "scan"
    for chunk in self.feed.epoch(epoch):
      batches = sharding.put_local_batches(run.mesh, chunk, run.config.batch_size, stacked)
      state, history = run.program.run_batches(state, batches, run.keys.noise)
      yield state, history

  def position(self) -> dict:
    return {"mode": "stream", "stream": self.feed.position()}


def open_input(run, dataset, step: int = 0, saved: dict | None = None):
  """``run.plan.input``'s input over ``dataset``'s train split, at global step
  ``step`` (an epoch's start or inside one). ``saved``: a checkpoint's
  ``position()``; a stream resumes where it says (checked against ``step``)."""
  if run.plan.input == "device":
    return DeviceInput(run, dataset.train_images)
  saved = (saved or {}).get("stream")
  epoch, batch = divmod(step, run.plan.steps_per_epoch)
  if saved is not None and (saved["epoch"], saved["batch"]) != (epoch, batch):
    raise InputError(
        f"The checkpoint's input stream stands at epoch {saved['epoch'] + 1}, batch "
        f"{saved['batch'] + 1}, but its train state at epoch {epoch + 1}, batch "
        f"{batch + 1}: the checkpoint is inconsistent. Use a new --workdir.")
  # A position saved with other chunks (another layout) is recomputed from the step.
  if saved and saved.get("chunk_batches") != run.plan.chunk_steps:
    saved = None
  return StreamInput(run, dataset, step, saved)
