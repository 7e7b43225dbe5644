"""Stopping a run cleanly: signals, the step every process stops at, and when to
checkpoint inside an epoch.

A cluster stops a job with a signal before it kills it: SLURM sends SIGTERM at the
time limit (or the ``--signal`` of the job's choice, e.g. SIGUSR1 a minute early), a
TPU VM's maintenance event or preemption sends SIGTERM, Ctrl-C is SIGINT. ``Signals``
turns each of these into a request to stop at the run's next safe point, whatever it
is doing. While it trains, the current chunk of steps finishes, a checkpoint is saved
at that exact step, the writers close and the lock is released; before training
(loading the data, building and compiling) and during the final evaluation, the run
stops where it stands, with nothing new to save. Either way it raises ``Stopped``,
whose message says what is saved; ``experiments/main.py`` exits with
``EXIT_STOPPED``, a status of its own so that a job script can requeue (see
docs/reliability.md). The CLI handles signals from its first moment
(``experiments/early_signals.py``) and keeps one ``Signals`` for the whole process.
A second signal of the same kind stops the process at once, as it would without
aejax (the last checkpoint is complete either way: orbax commits a checkpoint by
renaming its finished folder).

Several processes stop at the same step: at every chunk boundary, and at each safe
point outside the loop, they all-gather their requests (``agree``), and stop together
if any of them was signalled. Orbax's ``CheckpointManager.reached_preemption`` does
this through the JAX coordination service for SIGTERM alone, where its own handler
catches it; aejax takes SIGINT and SIGUSR1 too, so it agrees itself.

``Cadence`` says when a checkpoint falls due between epoch ends:
``config.checkpoint_every_steps`` and ``config.checkpoint_every_minutes``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable

import jax
import numpy as np
from absl import logging

# sysexits.h's EX_TEMPFAIL ("temporary failure; the user is invited to retry"): the run
# saved its state and wants to be started again.
EXIT_STOPPED = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(Exception):
  """The run stopped on a signal at a safe point, after saving what there was to save;
  the same command resumes (or starts, or finishes) it. ``step``: the step of the
  newest checkpoint, None when there is none yet."""

  def __init__(self, signal_name: str | None, step: int | None, where: str,
               then: str = "resume"):
    """``signal_name`` None: another process of the run was signalled. ``where``: the
    point it stopped at; ``then``: what the next run of the command does."""
    signal_name = signal_name or "a signal to another process"
    self.signal_name, self.step = signal_name, step
    if step is None:
      saved = f"Stopped by {signal_name} {where}: nothing to save yet"
    else:
      saved = (f"Stopped by {signal_name} at step {step} ({where}); the checkpoint of "
               f"step {step} is saved")
    super().__init__(f"{saved}. Run the same command again to {then} (exit status "
                     f"{EXIT_STOPPED}).")


class _Interrupted(BaseException):
  """Raised by the handler inside ``Signals.interrupting``; a BaseException, like
  KeyboardInterrupt, so that no library's ``except Exception`` takes it for an error
  of its own."""


class Signals:
  """``with Signals() as signals:`` SIGTERM, SIGINT and SIGUSR1 set ``signals.received``
  (the first one's name) instead of ending the process; the run acts on it at its
  next safe point (``stop_here``, and the training loop's chunk boundaries). The
  previous handlers come back on exit. Outside the main thread (a notebook's worker)
  nothing is installed and signals act as before.

  One per process: entered while another is installed, it gives that one, so that a
  signal anywhere in a run reaches the same object. The CLI installs one for the
  whole process (``install``), taking over from ``experiments/early_signals.py``.
  """

  installed: "Signals | None" = None

  def __init__(self, at_once: dict | None = None):
    """``at_once``: ``{signal: handler}`` that a second signal of the same kind goes
    to (the CLI's ``SIG_DFL``, which ends the process); by default the handler this
    one replaced."""
    self.received: str | None = None
    self.at: float | None = None  # time.monotonic() of the first signal
    self._at_once = dict(at_once or {})
    self._previous: dict = {}
    self._interrupting = False

  def __enter__(self) -> "Signals":
    if Signals.installed is not None:
      return Signals.installed
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
      Signals.installed = self
    return self

  def __exit__(self, *exc) -> None:
    if Signals.installed is not self:
      return
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}
    Signals.installed = None

  def install(self, earlier: Callable[[], str | None] = lambda: None) -> "Signals":
    """Installs the handlers for the rest of the process. ``earlier()``, asked once
    they are in place (so that no signal falls between two handlers): the first
    signal that came before, to the handler this one takes over from."""
    signals = self.__enter__()
    came = earlier()
    if signals.received is None and came is not None:
      signals.received, signals.at = came, time.monotonic()
    return signals

  def _handle(self, signum, frame) -> None:
    name = signal.Signals(signum).name
    if self.received == name:  # the same signal again: stop now, as without aejax
      logging.warning("%s again: stopping at once, without saving anything more.", name)
      signal.signal(signum, self._at_once.get(signum, self._previous.get(signum,
                                                                          signal.SIG_DFL)))
      signal.raise_signal(signum)
      return
    if self.received is None:
      self.received, self.at = name, time.monotonic()
      logging.warning("%s received: stopping at the next safe point (in training, after "
                      "this chunk of steps and a checkpoint of it); send it again to stop "
                      "at once.", name)
      if self._interrupting:
        raise _Interrupted

  def stop_here(self, where: str, step: int | None = None, then: str = "resume") -> None:
    """A safe point: raises ``Stopped`` (``where``, the newest checkpoint's ``step``,
    what the next run does) if this process or, agreed, any other was signalled."""
    if agree(self.received is not None)[0]:
      raise Stopped(self.received, step, where, then)

  @contextlib.contextmanager
  def interrupting(self, where: str, then: str = "start or resume the run"):
    """Inside, a signal stops at once: ``Stopped`` (nothing saved) is raised from
    wherever the main thread is, for a long step that leaves nothing half-written
    behind when an exception passes through it (reading data; TFDS's preparation,
    which writes a temporary folder and renames it). With several processes a signal
    waits for the next ``stop_here``, where they stop together."""
    if jax.distributed.is_initialized():
      yield
      return
    self.stop_here(where, then=then)
    self._interrupting = True
    try:
      yield
      self._interrupting = False
    except _Interrupted:
      raise Stopped(self.received, None, where, then) from None
    finally:
      self._interrupting = False


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
