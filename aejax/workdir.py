"""A run's workdir: the lock, the config and its history, results.json and pictures.

What a workdir guarantees (docs/reliability.md):

- **One run at a time.** ``Workdir`` holds an OS file lock (``flock`` on ``.lock``) for
  the whole run; a second run in the same folder stops with one line naming the
  holder's pid. The OS drops the lock of a killed process, so the next run takes over.
- **The past is never rewritten.** config.json is the config the run started with.
  A resumed run may change only ``config.LAYOUT_KEYS`` (the same arithmetic laid out
  differently, or more epochs) and, when asked explicitly, ``config.CONTINUE_KEYS`` (the
  optimizer's settings, e.g. a lower learning rate after a NaN stop); each resumed
  segment and what it changed is recorded in the checkpoint and in results.json.
- **Only process 0 writes** files here and holds the lock; the other processes of
  the same run share the workdir without it.
- **A write that fails for the storage's sake** (a full disk or quota, a read-only or
  unwritable folder, a workdir removed while running) is one line naming the path
  and what to do (``storage_error``); the checkpoints before it stay complete, so the
  same command resumes once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib

import jax

from aejax.config import CONTINUE_KEYS, LAYOUT_KEYS

class WorkdirError(Exception):
  """The workdir cannot be used as asked; the message says why and what to do."""


# What a failed write's errno means, and the text that names it inside the messages
# of libraries that wrap it (orbax's tensorstore: "... [os_error_code='28']").
_STORAGE = {
    errno.ENOSPC: ("the disk is full", "No space left on device"),
    errno.EDQUOT: ("the disk quota is used up", "Disk quota exceeded"),
    errno.EROFS: ("the file system is read-only", "Read-only file system"),
    errno.EACCES: ("permission is denied", "Permission denied"),
    errno.ENOENT: ("the folder is gone", "No such file or directory"),
}
_FIX = {
    errno.ENOSPC: "Free space there (or move the workdir to a larger disk and pass its new "
                  "--workdir)",
    errno.EROFS: "Make it writable (or copy the workdir to a writable disk and pass its "
                 "new --workdir)",
    errno.ENOENT: "If the workdir was moved, pass its new place as --workdir",
}
_FIX[errno.EDQUOT] = _FIX[errno.ENOSPC]
_FIX[errno.EACCES] = _FIX[errno.EROFS]


def storage_error(error: BaseException) -> int | None:
  """The errno of ``_STORAGE`` that ``error`` (or an error it wraps) reports; None
  for any other error."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno in _STORAGE:
      return seen.errno
    text = str(seen)
    for code, (_, message) in _STORAGE.items():
      if message in text or f"os_error_code='{code}'" in text:
        return code
    seen = seen.__cause__ or seen.__context__
  return None


def storage_message(code: int, what: str, path, resumes: str) -> str:
  """One line: what could not be written, why, and what to do."""
  return (f"Writing {what} failed: {_STORAGE[code][0]} ({path}). {_FIX[code]}, then run "
          f"the same command again: {resumes}.")


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_changes(saved: dict, now: dict) -> dict[str, list]:
  """``{key: [saved value, new value]}`` for every (dotted) key that differs."""
  saved, now = _flatten(saved), _flatten(now)
  # JSON turns tuples into lists: compare through JSON.
  norm = lambda v: json.loads(json.dumps(v))
  return {k: [saved.get(k), now.get(k)] for k in sorted(set(saved) | set(now))
          if norm(saved.get(k)) != norm(now.get(k))}


def check_changes(path, changes: dict[str, list], trained_epochs: int,
                  continue_with_changes: bool) -> None:
  """Raises WorkdirError for a change a resumed run may not make."""
  allowed = set(LAYOUT_KEYS) | (set(CONTINUE_KEYS) if continue_with_changes else set())
  refused = sorted(k for k in changes if k not in allowed)
  if refused:
    listed = ", ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused)
    optimizer_only = all(k in CONTINUE_KEYS for k in refused)
    hint = (" To go on from the last checkpoint with these optimizer settings, add "
            "--continue_with_changes." if optimizer_only else "")
    raise WorkdirError(
        f"{path} holds a run made with a different config ({listed}).{hint} Otherwise "
        "use a new --workdir, or delete this one to start over.")
  if "num_epochs" in changes and changes["num_epochs"][1] < trained_epochs:
    raise WorkdirError(
        f"{path} has already trained {trained_epochs} epochs; --config.num_epochs="
        f"{changes['num_epochs'][1]} would train fewer. Use num_epochs ≥ {trained_epochs}, "
        "or a new --workdir.")


class Workdir:
  """The folder of one run, locked while open (``with Workdir(path) as work:``)."""

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self.writes = jax.process_index() == 0
    self._lock = None

  def __enter__(self) -> "Workdir":
    # The folders this run makes, innermost first: removed again if it fails before
    # writing anything (``__exit__``).
    self._made = []
    for folder in (self.path, *self.path.parents):
      if folder.exists():
        break
      self._made.append(folder)
    try:
      self.path.mkdir(parents=True, exist_ok=True)
      if not self.writes:
        return self
      found = (self.path / ".lock").exists()
      lock = open(self.path / ".lock", "a+")
    except OSError as e:
      self._remove_made()
      raise WorkdirError(f"--workdir {self.path} cannot be used: {e.strerror or e}. "
                         "Name a folder you can write to.") from None
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      lock.seek(0)
      holder = lock.read().strip() or "unknown"
      lock.close()
      raise WorkdirError(f"{self.path} is in use by another run (pid {holder}); wait for "
                         "it to finish, or use another --workdir.") from None
    lock.seek(0)
    self._found = (found, lock.read())  # what a failed run puts back
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    self._lock = lock
    self._before = self._listing()
    return self

  def _listing(self) -> dict | None:
    """Every entry but the lock, with its kind, size and modification time: what any
    write of the run changes (a checkpoint's new folder, that of ``checkpoints/``)."""
    try:
      return {e.name: (e.is_dir(), e.stat().st_size, e.stat().st_mtime_ns)
              for e in os.scandir(self.path) if e.name != ".lock"}
    except OSError:
      return None

  def _holds_lock_file(self) -> bool:
    """Whether the workdir's lock file is still the one this process locked."""
    try:
      return os.stat(self.path / ".lock").st_ino == os.fstat(self._lock.fileno()).st_ino
    except OSError:
      return False

  def _remove_made(self) -> None:
    for folder in self._made:  # a folder someone else put something in stays
      try:
        folder.rmdir()
      except OSError:
        return

  def check_present(self) -> None:
    """Raises WorkdirError if the workdir was removed or moved while the run held it
    (its lock file is no longer the one this process locked): writing on would start
    a new folder with no past there."""
    if self._lock is not None and not self._holds_lock_file():
      raise WorkdirError(
          f"--workdir {self.path} was removed or moved while this run was training; "
          "nothing more is written there. If it was moved, run the same command with "
          "its new place as --workdir to resume from its last checkpoint.")

  @contextlib.contextmanager
  def writing(self, what: str, resumes: str):
    """Turns a failed write of ``what`` that the storage caused into a one-line
    WorkdirError (``storage_message``); ``resumes`` says where a rerun goes on from."""
    self.check_present()
    try:
      yield
    except Exception as e:  # noqa: BLE001 - whatever the writer wraps the OSError in
      code = storage_error(e)
      if code is None:
        raise
      raise WorkdirError(storage_message(code, what, self.path, resumes)) from None

  def __exit__(self, exc_type, *exc) -> None:
    if self._lock is None:
      return
    try:
      # A run that failed before writing anything (unreadable data, a config its
      # data refuses, an interrupt while loading) leaves the workdir as it found it:
      # the lock file as it was, and a folder the run made itself removed. The lock
      # is held meanwhile, so no other run starts in the folder halfway through.
      if (exc_type is not None and self._holds_lock_file()
          and self._listing() == self._before):
        found, content = self._found
        if found:
          self._lock.seek(0)
          self._lock.truncate()
          self._lock.write(content)
          self._lock.flush()
        else:
          (self.path / ".lock").unlink()
          self._remove_made()
      elif self._holds_lock_file():
        # The pid leaves the file with the lock, so that a reader's note that the run
        # is training (``checkpoint_reader.training_pid``) names only a holder.
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.flush()
    except OSError:
      pass  # the run's own error is the one to report
    finally:
      fcntl.flock(self._lock, fcntl.LOCK_UN)
      self._lock.close()
      self._lock = None

  # ------------------------------------------------------------------ the config

  @property
  def config_path(self) -> pathlib.Path:
    return self.path / "config.json"

  def saved_config(self) -> dict | None:
    """config.json's contents; None if there is none. A file that cannot be read is
    an error naming it."""
    if not self.config_path.exists():
      return None
    try:
      return json.loads(self.config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise WorkdirError(
          f"{self.config_path} cannot be read ({e}). If this workdir holds checkpoints, "
          "its config is restored from them; otherwise delete the file or use another "
          "--workdir.") from None

  def write_json(self, name: str, content) -> None:
    """Writes ``name`` atomically (a temporary file, then a rename); process 0 only."""
    if not self.writes:
      return
    target = self.path / name
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, target)
