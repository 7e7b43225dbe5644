"""Signals from a command's first moment, before its imports: remembered, not fatal.

``experiments/main.py`` and ``experiments/prepare_data.py`` import this module before
anything else and call ``install()``: their imports (JAX, orbax, TFDS) take seconds,
and a job preempted while they run must still stop with exit status 75, not die
with 143. The handler only remembers the signal; ``aejax.preemption.Signals`` takes
over once aejax is imported (``first()``) and stops at the first safe point. A
second signal of the same kind ends the process at once, as without it. Nothing
here imports aejax, whose package may import JAX.
"""

from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# What a second signal of the same kind does: the default action, the end of the
# process (SIGINT too: without a KeyboardInterrupt's traceback).
AT_ONCE = dict.fromkeys(SIGNALS, signal.SIG_DFL)
_received: list[str] = []


def _remember(signum, frame) -> None:
  del frame
  name = signal.Signals(signum).name
  if name in _received:
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    return
  _received.append(name)


def install() -> None:
  for sig in SIGNALS:
    signal.signal(sig, _remember)


def first() -> str | None:
  """The name of the first signal received so far; None if none came."""
  return _received[0] if _received else None


def ignore() -> None:
  """From here to the process's end these signals change nothing: for a command whose
  outcome is decided (and said), about to exit. Python restores their default action
  while it shuts down, where one would end the process with 143 instead of its status;
  an ignored signal stays ignored."""
  for sig in SIGNALS:
    signal.signal(sig, signal.SIG_IGN)
