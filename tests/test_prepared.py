"""Prepared copies, through the command line on small folders the tests write: a
folder is decoded once and every later launch reads the copy; a changed folder is
prepared again, saying why; a damaged copy is set aside and prepared again, never
trained on; two processes preparing one copy take turns; a killed or interrupted
preparer leaves no half copy; a full disk is one line; unreadable files are one line,
or skipped and counted when asked."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from aejax.data import decode, folders, prepared

ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")
RNG = np.random.default_rng(0)


def write_folder(folder: pathlib.Path, per_class: int, size: int = 8) -> None:
  for name in ("a", "b"):
    (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
      Image.fromarray(RNG.integers(0, 256, (size, size, 3), np.uint8)).save(
          folder / name / f"{i:04d}.png")


def args(folder, *more):
  return ("--config=experiments/configs/vanilla.py", f"--config.dataset=folder:{folder}",
          "--config.batch_size=16", "--config.num_epochs=1", *more)


def results(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def only_line(stderr: str) -> str:
  """The one line besides absl's log lines (the test fails, showing them, otherwise)."""
  lines = [l for l in stderr.splitlines() if l and not ABSL_LINE.match(l)]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0]


def copies(tfds: pathlib.Path) -> list[str]:
  """The finished copies' folders (not the locks, not a copy under its temporary name)."""
  return sorted(p.name for p in (tfds / prepared.ROOT_NAME).iterdir()
                if not p.name.endswith(".lock") and not p.name.startswith("."))


def test_a_folder_is_prepared_once_reused_and_prepared_again_when_it_changes(tmp_path, cli):
  folder, tfds = tmp_path / "pictures", tmp_path / "tfds"
  write_folder(folder, 40)
  env = {"TFDS_DATA_DIR": str(tfds)}
  first = cli.run(tmp_path / "one", *args(folder), env=env).stderr
  assert "Preparing folder:" in first and "(none yet)" in first and "Remove it with" in first
  second = cli.run(tmp_path / "two", *args(folder), env=env).stderr
  assert "Preparing" not in second  # read from the copy
  assert results(tmp_path / "two")["test"] == results(tmp_path / "one")["test"]
  (key,) = copies(tfds)

  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a" / "0000.png")
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "b" / "new.png")
  third = cli.run(tmp_path / "three", *args(folder), env=env).stderr
  assert "1 file changed, 1 added, 0 removed since it was prepared" in third
  assert copies(tfds) == [key]  # the same copy, prepared again in place
  fingerprint = lambda w: results(tmp_path / w)["dataset"]["fingerprint"]
  assert fingerprint("three") != fingerprint("one")
  assert results(tmp_path / "three")["dataset"]["n_train"] + results(
      tmp_path / "three")["dataset"]["n_test"] == 81


def test_a_damaged_copy_is_set_aside_never_trained_on_and_prepared_again(tmp_path, cli):
  folder, tfds = tmp_path / "pictures", tmp_path / "tfds"
  write_folder(folder, 40)
  env = {"TFDS_DATA_DIR": str(tfds)}
  cli.run(tmp_path / "straight", *args(folder), env=env)
  (key,) = copies(tfds)
  images = tfds / prepared.ROOT_NAME / key / "train_images.npy"
  damaged = bytearray(images.read_bytes())
  damaged[len(damaged) // 2] ^= 0xFF  # one byte in the middle of the train split
  images.write_bytes(bytes(damaged))
  proc = cli.run(tmp_path / "damaged", *args(folder), env=env, check=False)
  assert proc.returncode == 1
  line = only_line(proc.stderr)
  assert "fail their checksum" in line and "It was set aside" in line, line
  assert not (tmp_path / "damaged" / "results.json").exists()
  rerun = cli.run(tmp_path / "damaged", *args(folder), env=env).stderr
  assert "Preparing folder:" in rerun
  assert results(tmp_path / "damaged")["test"] == results(tmp_path / "straight")["test"]

  # A truncated copy is noticed as it is opened, and prepared again at once.
  with open(images, "r+b") as f:
    f.truncate(images.stat().st_size - 100)
  proc = cli.run(tmp_path / "truncated", *args(folder), env=env)
  assert "is damaged" in proc.stderr and "it is truncated" in proc.stderr
  assert results(tmp_path / "truncated")["test"] == results(tmp_path / "straight")["test"]


def test_two_runs_preparing_one_folder_take_turns_and_a_killed_one_leaves_no_half_copy(
    tmp_path, cli):
  """Through the command line: a run paused while it prepares (its copy written under
  a temporary name, the lock held) is SIGKILLed; the next run removes the half copy
  and prepares it whole while a third, started meanwhile, waits for it, then reuses
  its copy."""
  folder, tfds = tmp_path / "pictures", tmp_path / "tfds"
  write_folder(folder, 40)
  env, root = {"TFDS_DATA_DIR": str(tfds)}, tfds / prepared.ROOT_NAME
  marker = tmp_path / "preparing"
  killed = cli.start_child(tmp_path / "killed", "prepare", marker, *args(folder), env=env)
  cli.wait_for(marker, killed)
  killed.kill()
  killed.wait()
  marker.unlink()
  assert list(root.glob(".*.tmp"))  # the half copy, under its temporary name

  first = cli.start_child(tmp_path / "one", "prepare", marker, *args(folder), env=env,
                          output=True)
  cli.wait_for(marker, first)  # preparing, the lock held
  log = tmp_path / "two.log"
  second = cli.start(tmp_path / "two", *args(folder), env=env, log=log)
  deadline = time.monotonic() + 300
  while f"Waiting for process {first.pid}, which is preparing" not in log.read_text():
    assert second.poll() is None, log.read_text()[-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.05)
  assert copies(tfds) == []  # nothing finished to read yet: it waits, not reads
  marker.unlink()  # the first goes on and finishes its copy
  _, first_err = first.communicate(timeout=300)
  assert first.returncode == 0 and second.wait(timeout=300) == 0, log.read_text()[-3000:]
  assert "Preparing folder:" in first_err and "Preparing" not in log.read_text()
  fingerprint = lambda w: results(tmp_path / w)["dataset"]["fingerprint"]
  assert fingerprint("one") == fingerprint("two")
  assert not list(root.glob(".*"))  # no half copy, no leftovers


def test_a_file_that_changes_while_it_is_prepared_is_one_line_and_leaves_no_copy(
    tmp_path, monkeypatch):
  folder, tfds = tmp_path / "pictures", tmp_path / "tfds"
  write_folder(folder, 20)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tfds))
  decode_into = decode.decode_into

  def changing(*a, **k):  # the file changes after it was listed, before it is read
    time.sleep(0.01)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "b" / "0003.png")
    return decode_into(*a, **k)

  monkeypatch.setattr(decode, "decode_into", changing)
  with pytest.raises(folders.DataError, match=r"0003\.png changed while it was being "
                     r"prepared; launch again"):
    folders.read_folder(folder)
  assert copies(tfds) == [] and not list((tfds / prepared.ROOT_NAME).glob(".*"))  # no half copy
  monkeypatch.setattr(decode, "decode_into", decode_into)
  assert folders.read_folder(folder).n_train > 0


def test_unreadable_files_are_one_line_or_skipped_and_counted(tmp_path, cli):
  folder, tfds = tmp_path / "pictures", tmp_path / "tfds"
  write_folder(folder, 30)
  (folder / "a" / "0007.png").write_bytes(b"not a picture")
  env = {"TFDS_DATA_DIR": str(tfds)}
  proc = cli.run(tmp_path / "strict", *args(folder), env=env, check=False)
  assert proc.returncode == 1
  assert re.fullmatch(r"error: .*0007\.png cannot be read as an image \(.*\); replace or "
                      r"remove it\.", only_line(proc.stderr))
  cli.run(tmp_path / "skip", *args(folder, "--config.skip_unreadable=True"), env=env)
  dataset = results(tmp_path / "skip")["dataset"]
  assert dataset["skipped_unreadable"] == 1 and dataset["n_train"] + dataset["n_test"] == 59
  # The copy that left the file out is not used by a run that did not ask to skip.
  proc = cli.run(tmp_path / "strict2", *args(folder), env=env, check=False)
  assert proc.returncode == 1 and "0007.png cannot be read" in only_line(proc.stderr)


def test_a_signal_while_preparing_exits_75_and_leaves_no_half_copy(tmp_path, cli):
  folder, tfds = tmp_path / "pictures", tmp_path / "tfds"
  write_folder(folder, 1000, size=32)
  proc = cli.start(tmp_path / "run", *args(folder), env={"TFDS_DATA_DIR": str(tfds)})
  deadline = time.monotonic() + 120
  root = tfds / prepared.ROOT_NAME
  while not (root.exists() and list(root.glob(".*.tmp"))):
    assert proc.poll() is None and time.monotonic() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 75, err[-2000:]
  assert "while loading the data" in only_line(err)
  assert not list(root.glob(".*")) and copies(tfds) == []


@pytest.mark.skipif(subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode
                    != 0, reason="needs unshare -rm (user namespaces) for a tmpfs of its own")
def test_a_full_disk_while_preparing_is_one_line_and_leaves_nothing(tmp_path):
  folder = tmp_path / "pictures"
  write_folder(folder, 200, size=32)  # 600 KiB of pixels, on a 256 KiB disk
  disk = tmp_path / "disk"
  disk.mkdir()
  script = (f'mount -t tmpfs -o size=256k tmpfs "{disk}" && '
            f'"{sys.executable}" -m experiments.main --workdir="{tmp_path / "run"}" '
            + " ".join(args(folder, f"--config.prepared_dir={disk}"))
            + f'; echo $? > "{tmp_path / "rc"}"; ls -A "{disk}" > "{tmp_path / "left"}"')
  proc = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True,
                        text=True, timeout=300, cwd=pathlib.Path(__file__).parents[1],
                        env={**os.environ, "AEJAX_DATA_DIR": ""})
  assert (tmp_path / "rc").read_text().strip() == "1", proc.stderr[-3000:]
  line = only_line(proc.stderr)
  assert re.fullmatch(r"error: Preparing folder:\S+ in \S+ failed: the disk is full\. Free "
                      r"space there, or name a disk with room with "
                      r"--config\.prepared_dir=<folder>\.", line), line
  left = (tmp_path / "left").read_text().split()
  assert all(name.endswith(".lock") for name in left), left  # no half copy
