"""Downloads through tensorflow-datasets, tried only when the network answers.

``network_reachable`` decides within seconds whether a host can be reached, so an
offline machine falls back at once instead of letting TFDS's download retry for
minutes. Through it: the MNIST family's canonical IDX files (prepared by
``tfds_builders``), and CIFAR-10 and CIFAR-100, which take only TFDS's download
manager and registered checksums (``download_cifar``): the tarball of binary records
is unpacked into ``$TFDS_DATA_DIR/aejax_cifar/`` and read by ``aejax.data.readers``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import tarfile
import threading
import urllib.parse

import tensorflow_datasets as tfds
from absl import logging

from aejax.data import core as data_lib, readers, tfds_builders

# Network reachability is decided within this many seconds, DNS lookup included,
# so that an offline machine falls back at once instead of letting TFDS's download
# retry for minutes.
REACHABILITY_TIMEOUT_S = 2.0


def network_reachable(url: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> bool:
  """Whether a TCP connection to ``url``'s host opens within ``timeout_s`` seconds.

  The DNS lookup has no timeout of its own, so the whole attempt runs in a daemon
  thread that is abandoned, not waited for, once the time is up.
  """
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (443 if parts.scheme == "https" else 80)
  outcome = []

  def connect():
    try:
      with socket.create_connection((parts.hostname, port), timeout=timeout_s):
        outcome.append(True)
    except OSError:
      outcome.append(False)

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout_s)
  return bool(outcome and outcome[0])


def download_and_load(name: str) -> data_lib.Dataset | None:
  """Downloads and prepares ``name`` when its host is reachable; None when offline."""
  url = tfds_builders.BUILDERS[name].URL
  if not network_reachable(url):
    logging.warning("Offline: %s cannot be reached within %.0f s, so %s is not "
                    "downloaded.", urllib.parse.urlsplit(url).hostname,
                    REACHABILITY_TIMEOUT_S, name)
    return None
  try:
    tfds_builders.prepare(name)
  except data_lib.DataError:
    raise
  except Exception as e:  # TFDS raises many kinds: network, checksum, disk
    raise _download_failed(
        name, e, "Prepare it from local IDX files instead: python -m experiments."
        f"prepare_data --dataset={name} --manual_dir=<folder>.") from e
  return tfds_builders.read_prepared(name)


def _download_failed(name: str, error: Exception, instead: str) -> data_lib.DataError:
  """The one-line error of a download through TFDS that failed, and what to do."""
  return data_lib.DataError(f"Downloading {name} through tensorflow-datasets failed "
                            f"({type(error).__name__}: {error}). {instead}")


# ------------------------------------- CIFAR's binary files, through TFDS's download

# Below TFDS's data dir: <data dir>/aejax_cifar/cifar-10-batches-bin (or
# cifar-100-binary), unpacked from the tarball TFDS's download manager fetched.
CIFAR_FOLDER = "aejax_cifar"


def cifar_download_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Where a downloaded CIFAR binary distribution is unpacked."""
  return pathlib.Path(data_dir or tfds_builders.default_data_dir()).expanduser() / CIFAR_FOLDER


def load_cifar_downloaded(name: str) -> data_lib.Dataset | None:
  """``name`` ('cifar10' or 'cifar100') from an earlier download unpacked in TFDS's
  data dir, else None. Read with no network: the unpacked files are the source."""
  folder = cifar_download_dir() / readers.CIFAR[name][0]
  if not folder.is_dir():
    return None
  return readers.read_cifar(folder, name)


def download_cifar(name: str) -> data_lib.Dataset | None:
  """Downloads ``name``'s binary tarball through TFDS's download manager when its host
  answers within seconds, its size and sha256 checked against those the installed
  tensorflow_datasets registers for its own ``cifar10`` / ``cifar100`` builders, and
  unpacks it into TFDS's data dir; None when offline.

  Only the download manager and the registered checksums are TFDS's: its builders
  parse these files with ``tf.io.gfile`` and need TensorFlow, so the files are read
  with ``readers.read_cifar`` instead, as from a ``data_dir``.
  """
  url = readers.CIFAR_URLS[name]
  if not network_reachable(url):
    return None
  checksums = tfds.core.utils.tfds_path() / "url_checksums" / f"{name}.txt"
  manager = tfds.download.DownloadManager(
      download_dir=str(tfds_builders.default_data_dir() / "downloads"),
      url_infos=tfds.core.download.checksums.load_url_infos(checksums),
      force_checksums_validation=True)
  target = cifar_download_dir()
  target.mkdir(parents=True, exist_ok=True)
  try:
    tarball = pathlib.Path(str(manager.download(url)))
    partial = target / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(tarball) as archive:
      archive.extractall(partial, filter="data")  # no absolute paths, no links out
    # Renamed into place once whole: a download cut off midway is never read as data.
    (partial / readers.CIFAR[name][0]).rename(target / readers.CIFAR[name][0])
    shutil.rmtree(partial)
  except Exception as e:  # TFDS raises many kinds: network, checksum, disk
    raise _download_failed(
        name, e, f"Download and unpack {url} yourself and pass --config.data_dir=<the "
        f"folder holding {readers.CIFAR[name][0]}>.") from e
  return load_cifar_downloaded(name)
