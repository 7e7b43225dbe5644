"""What every section reads: the plan, the images it measures on, the trained runs
and their results, and the folder the figures go to."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from aejax import analysis, data as data_lib
from experiments.report.plan import Plan


# The datasets Hinton & Salakhutdinov's MNIST figures may be set against.
MNIST_NAMES = ("mnist", "mnist_sample")


@dataclasses.dataclass
class Context:
  """The runs' own data, of any shape: images uint8 ``[N, H, W, C]`` (``*_u8``), float
  ``[N, H, W, C]`` in [0, 1] or flattened float ``[N, D]`` (``*_flat``); vectors float
  ``[N, D]`` throughout, as the runs trained on them (standardised where they were).
  PCA fits and codes are cached, since several sections read the same ones."""
  plan: Plan
  out: pathlib.Path  # the figures' folder
  runs_dir: pathlib.Path
  results: dict[str, dict]  # each run's results.json, by run name
  runs: dict[str, analysis.Run]
  records: dict[str, list[dict]]  # each run's metrics.jsonl
  frontier: list[dict]  # sparsity_frontier's rows
  train_u8: np.ndarray
  test_u8: np.ndarray
  test_labels: np.ndarray
  probe_labels: np.ndarray
  dataset: dict = dataclasses.field(default_factory=dict)  # data_lib.Dataset.record()
  test: np.ndarray = dataclasses.field(init=False)
  test_flat: np.ndarray = dataclasses.field(init=False)
  train_flat: np.ndarray = dataclasses.field(init=False)
  probe_train: np.ndarray = dataclasses.field(init=False)
  _pca: dict = dataclasses.field(default_factory=dict, init=False)
  _codes: dict = dataclasses.field(default_factory=dict, init=False)

  def __post_init__(self):
    self.test = analysis.to_float(self.test_u8)
    self.test_flat = analysis.flat(self.test)
    self.train_flat = analysis.flat(analysis.to_float(self.train_u8))
    self.probe_train = analysis.to_float(self.train_u8[:self.plan.probe_train])

  @property
  def dimensions(self) -> int:
    """D: pixels times channels of an image, or a vector's features."""
    return self.test_flat.shape[1]

  @property
  def is_vectors(self) -> bool:
    return self.test_u8.ndim == 2

  @property
  def bounded(self) -> bool:
    """Whether the data lies in [0, 1] (images always; vectors as recorded)."""
    return self.dataset.get("bounded", True)

  @property
  def is_mnist(self) -> bool:
    """MNIST's 28x28x1 digits, which the article's published figures are of."""
    return self.dataset.get("name", "mnist") in MNIST_NAMES and self.dimensions == 784

  def unlabelled(self) -> str | None:
    """Why no probe can be fit (one line), or None when the labels allow one."""
    classes = np.unique(self.probe_labels)
    if len(classes) < 2:
      name = self.dataset.get("name", "the data")
      return (f"No probe: {name} has no labels to predict (its {len(self.probe_labels):,} "
              f"probe training examples all have label {int(classes[0])}); give the "
              "data labels (an npz's train_labels / test_labels, a folder's class "
              "subfolders) to measure codes as features.")
    return None

  def pca(self, k: int):
    if k not in self._pca:
      self._pca[k] = analysis.fit_pca(self.train_flat, k)
    return self._pca[k]

  def codes(self, name: str, split: str) -> np.ndarray:
    """Codes of run ``name`` on 'test' or 'probe_train', flattened to [N, K]."""
    if (name, split) not in self._codes:
      images = self.test if split == "test" else self.probe_train
      self._codes[name, split] = analysis.flat(self.runs[name].encode(images))
    return self._codes[name, split]

  def sse(self, name: str) -> float:
    """Mean squared error per test image of run ``name``'s reconstruction."""
    return float(np.mean(analysis.sse_per_image(
        reference=self.test, reconstruction=self.runs[name].reconstruct(self.test))))

  def pca_sse(self, pca) -> float:
    """Mean squared error per test image of ``pca``'s reconstruction."""
    return float(np.mean(analysis.sse_per_image(
        reference=self.test_flat, reconstruction=analysis.pca_reconstruct(pca, self.test_flat))))


def make_context(plan: Plan, dataset: data_lib.Dataset, runs_dir: pathlib.Path,
                 results: dict[str, dict], out: pathlib.Path, frontier: list[dict]) -> Context:
  """Loads every run in ``results`` from ``runs_dir`` and cuts the data to the plan."""
  return Context(
      plan=plan, out=out, runs_dir=runs_dir, results=results,
      runs={name: analysis.load_run(runs_dir / name) for name in results},
      records={name: metrics(runs_dir / name) for name in results}, frontier=frontier,
      # The report's baselines (PCA, probes) hold the train set in memory.
      train_u8=np.asarray(dataset.train_images),
      test_u8=dataset.test_images[:plan.test_images],
      test_labels=dataset.test_labels[:plan.test_images],
      probe_labels=dataset.train_labels[:plan.probe_train], dataset=dataset.record())


def from_runs(runs_dir: pathlib.Path, plan: Plan, out: pathlib.Path) -> Context:
  """The context of every trained run in ``runs_dir`` (a folder holding results.json),
  on the data those runs trained on: loaded as the first run's config names it (its
  ``dataset``, ``data_dir``, ``standardize``), whatever its shape. A run trained on
  other data (another fingerprint) is refused in one line."""
  runs_dir = pathlib.Path(runs_dir)
  results = {path.parent.name: json.loads(path.read_text())
             for path in sorted(runs_dir.glob("*/results.json"))}
  if not results:
    raise FileNotFoundError(f"{runs_dir} holds no trained run (no */results.json).")
  first = next(iter(results))
  dataset = data_lib.load(analysis.load_run(runs_dir / first).config)
  for name, result in results.items():
    if result["dataset"]["fingerprint"] != dataset.fingerprint:
      raise data_lib.DataError(
          f"{runs_dir / name} trained on {result['dataset']['name']} (fingerprint "
          f"{result['dataset']['fingerprint'][:12]}), not on {first}'s {dataset.name} "
          f"({dataset.fingerprint[:12]}): one report measures runs of one data set.")
  return make_context(plan, dataset, runs_dir, results, out, frontier=[])


def metrics(workdir: pathlib.Path) -> list[dict]:
  """A run's metrics.jsonl, one record per line."""
  path = workdir / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one_per_digit(labels: np.ndarray) -> np.ndarray:
  """Indices of the first image of each digit (at most 10)."""
  return np.array([np.flatnonzero(labels == d)[0] for d in np.unique(labels)[:10]])

