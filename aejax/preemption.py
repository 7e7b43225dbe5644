"""Stopping a run cleanly: signals, the step every process stops at, and when to
checkpoint inside an epoch.

A cluster stops a job with a signal before it kills it: SLURM sends SIGTERM at the
time limit (or the ``--signal`` of the job's choice, e.g. SIGUSR1 a minute early), a
TPU VM's maintenance event or preemption sends SIGTERM, Ctrl-C is SIGINT. While a run
trains, ``Signals`` turns each of these into a request to stop: the current chunk of
steps finishes, a checkpoint is saved at that exact step, the writers close, the lock
is released, and the run raises ``Stopped``; ``experiments/main.py`` exits with
``EXIT_STOPPED``, a status of its own so that a job script can requeue (see
docs/reliability.md). A second signal of the same kind stops the process at once, as
it would without aejax (the last checkpoint is complete either way: orbax commits a
checkpoint by renaming its finished folder).

Several processes stop at the same step: at every chunk boundary they all-gather
their requests (``agree``), and stop together if any of them was signalled. Orbax's
``CheckpointManager.reached_preemption`` does this through the JAX coordination
service for SIGTERM alone, where its own handler catches it; aejax takes SIGINT and
SIGUSR1 too, so it agrees itself.

``Cadence`` says when a checkpoint falls due between epoch ends:
``config.checkpoint_every_steps`` and ``config.checkpoint_every_minutes``.
"""

from __future__ import annotations

import signal
import threading
import time

import jax
import numpy as np
from absl import logging

# sysexits.h's EX_TEMPFAIL ("temporary failure; the user is invited to retry"): the run
# saved its state and wants to be started again.
EXIT_STOPPED = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(Exception):
  """The run stopped on a signal after saving a checkpoint; the same command resumes."""

  def __init__(self, signal_name: str | None, step: int, where: str):
    """``signal_name`` None: another process of the run was signalled."""
    signal_name = signal_name or "a signal to another process"
    self.signal_name, self.step = signal_name, step
    super().__init__(f"Stopped by {signal_name} at step {step} ({where}); the checkpoint "
                     f"of step {step} is saved. Run the same command again to resume "
                     f"(exit status {EXIT_STOPPED}).")


class Signals:
  """``with Signals() as signals:`` SIGTERM, SIGINT and SIGUSR1 set ``signals.received``
  (the first one's name) instead of ending the process; the previous handlers come
  back on exit. Outside the main thread (a notebook's worker) nothing is installed and
  signals act as before."""

  def __init__(self):
    self.received: str | None = None
    self.at: float | None = None  # time.monotonic() of the first signal
    self._previous: dict = {}

  def __enter__(self) -> "Signals":
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    name = signal.Signals(signum).name
    if self.received == name:  # the same signal again: stop now, as without aejax
      logging.warning("%s again: stopping at once, without a checkpoint of this step.", name)
      signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
      signal.raise_signal(signum)
      return
    if self.received is None:
      self.received, self.at = name, time.monotonic()
      logging.warning("%s received: finishing this chunk of steps, then saving a "
                      "checkpoint and stopping (send it again to stop at once).", name)


def agree(*requests: bool) -> tuple[bool, ...]:
  """Each request, true if any process made it: the same answer on every process.
  One small all-gather when there are several processes; the requests as they are in
  one."""
  if jax.process_count() == 1:
    return tuple(bool(r) for r in requests)
  from jax.experimental import multihost_utils
  gathered = multihost_utils.process_allgather(np.asarray(requests, np.int32))
  return tuple(bool(x) for x in np.asarray(gathered).reshape(-1, len(requests)).max(0))


class Cadence:
  """When a checkpoint falls due inside an epoch: ``every_steps`` steps, or
  ``every_minutes`` of wall time, after the last one (0 turns either off)."""

  def __init__(self, every_steps: int, every_minutes: float, step: int):
    self.every_steps, self.every_seconds = every_steps, 60.0 * every_minutes
    self.saved(step)

  def saved(self, step: int) -> None:
    self._step, self._time = step, time.monotonic()

  def due(self, step: int) -> bool:
    return bool((self.every_steps and step - self._step >= self.every_steps) or
                (self.every_seconds and time.monotonic() - self._time >= self.every_seconds))
