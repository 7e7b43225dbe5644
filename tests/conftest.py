"""Shared test fixtures: the full-MNIST folder (optional), the command line in a
subprocess, and the comparison of two data-parallel trainings."""

import os
import pathlib
import shutil
import tempfile

import pytest

# Tests must not grab every core or preallocate accelerator memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Compiling is most of this suite's time on a CPU: hundreds of small programs, each run
# for a few seconds at most. LLVM's optimisation level 0 compiles them about twice as
# fast (the same XLA programs, plainer machine code; still no fast-math). Set before
# JAX starts, so that the commands the tests launch inherit it; a level already in
# XLA_FLAGS is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()
# Most tests train the same few small models on the bundled sample, many of them in
# commands they launch: JAX's persistent compilation cache, one folder per test session
# (made by the first process to import this file, inherited by the xdist workers and
# every command they run), compiles each program once for the whole suite. Programs
# that compile fast are cached too (JAX's default skips those under a second).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="aejax-tests-jax-cache-")
  os.environ["AEJAX_TESTS_OWN_JAX_CACHE"] = str(os.getpid())
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
# TFDS's data dir (where prepared copies and stream copies go) for the whole session,
# module fixtures included, never ~/tensorflow_datasets; each test gets its own below.
if "AEJAX_TESTS_OWN_TFDS_DIR" not in os.environ:
  os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="aejax-tests-tfds-")
  os.environ["AEJAX_TESTS_OWN_TFDS_DIR"] = str(os.getpid())


# The longest file, by far (its quick report trains and measures for about four
# minutes): collected first, so that xdist's first worker starts it while the other
# works through the rest ("--no-loadscope-reorder" in pyproject.toml keeps this order;
# xdist would otherwise order the files by their number of tests).
FIRST = ("test_report.py",)


def pytest_collection_modifyitems(config, items):
  del config
  items.sort(key=lambda item: item.path.name not in FIRST)  # stable: the rest in order


def pytest_unconfigure(config):
  """The process that made the compilation cache's and TFDS's folders removes them at
  the end."""
  del config
  if os.environ.get("AEJAX_TESTS_OWN_JAX_CACHE") == str(os.getpid()):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
  if os.environ.get("AEJAX_TESTS_OWN_TFDS_DIR") == str(os.getpid()):
    shutil.rmtree(os.environ["TFDS_DATA_DIR"], ignore_errors=True)


# Its asserts (wait_for's) say what they compared, as a test file's would.
pytest.register_assert_rewrite("tests.helpers")
from tests import helpers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Full MNIST for the tests that need it: $AEJAX_TEST_MNIST_DIR, else $AEJAX_DATA_DIR
# (the folder runs train on), else a shared/data/mnist folder beside the project.
MNIST_DIR = pathlib.Path(os.environ.get("AEJAX_TEST_MNIST_DIR") or os.environ.get(
    "AEJAX_DATA_DIR") or ROOT.parent / "shared" / "data" / "mnist")


@pytest.fixture
def mnist_dir() -> pathlib.Path:
  if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
    pytest.skip(f"full MNIST not found at {MNIST_DIR} (set AEJAX_DATA_DIR to the folder "
                "of its four IDX files)")
  return MNIST_DIR


@pytest.fixture(autouse=True)
def isolated_tfds_data_dir(tmp_path_factory, monkeypatch):
  """No test reads or writes data someone prepared in ~/tensorflow_datasets."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path_factory.mktemp("tfds_data_dir")))


@pytest.fixture(scope="session")
def cli() -> helpers.Cli:
  """``cli.run(workdir, *flags, devices=None, env=None, check=True)`` and the rest of
  tests/helpers.py: experiments.main and the other commands in a subprocess."""
  return helpers.Cli()


@pytest.fixture(scope="session")
def assert_same_training():
  """``assert_same_training(a, b)`` on two runs' test metrics: the same training up to
  the order of float sums (an all-reduce's, when the devices or processes differ)."""

  def check(a: dict, b: dict) -> None:
    for key in ("mse", "sse_per_image", "bce"):
      assert a[key] == pytest.approx(b[key], rel=1e-4), key

  return check
