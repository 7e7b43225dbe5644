"""The report's PCA, probe and 2-D map sections (1 to 4) on runs trained on data that
is not MNIST: colour images and unbounded, unlabelled float vectors.

Each data set gets the vanilla autoencoder at two code sizes, trained 1 epoch in one
module fixture; the sections read the runs' own data back through their configs."""

import json

import numpy as np
import pytest

from aejax import data, trainer
from experiments import report
from experiments.configs import vanilla

RNG = np.random.default_rng(0)
SIZES = (2, 16)


def train_sweep(runs_dir, dataset, **keys):
  for k in SIZES:
    config = vanilla.get_config()
    config.dataset, config.num_epochs, config.batch_size = dataset, 1, 16
    config.model.code_size = k
    for key, value in keys.items():
      config[key] = value
    trainer.train_and_evaluate(config, str(runs_dir / f"vanilla_k{k}"))


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
  """``{kind: (runs folder, report folder, report.json, REPORT.md)}`` for 'colour'
  (labelled uint8 32x32x3 images) and 'vectors' (standardised float [N, 12], no
  labels)."""
  root = tmp_path_factory.mktemp("report_data")
  np.savez(root / "colour.npz", train=RNG.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8),
           test=RNG.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
           train_labels=np.arange(120) % 3, test_labels=np.arange(30) % 3)
  np.savez(root / "vectors.npz",
           train=(RNG.standard_normal((96, 12)) * 5 + 10).astype(np.float32),
           test=(RNG.standard_normal((24, 12)) * 5 + 10).astype(np.float32))
  out = {}
  for kind, keys in (("colour", {}), ("vectors", {"standardize": True})):
    runs_dir = root / kind / "runs"
    train_sweep(runs_dir, f"npz:{root / f'{kind}.npz'}", **keys)
    folder = root / kind / "report"
    report.codes_report(folder, runs_dir, command="codes_report")
    numbers = json.loads((folder / "report.json").read_text())
    out[kind] = runs_dir, folder, numbers, (folder / "REPORT.md").read_text()
  return out


@pytest.mark.slow
def test_pca_and_sweep_read_each_runs_own_data(reports):
  for kind, d in (("colour", 32 * 32 * 3), ("vectors", 12)):
    runs_dir, folder, numbers, text = reports[kind]
    for k in SIZES:
      row = numbers["sweep"][str(k)]
      result = json.loads((runs_dir / f"vanilla_k{k}" / "results.json").read_text())
      # The section's reconstruction error is the run's own test figure: the same data.
      assert row["ae_sse_per_image"] == pytest.approx(result["test"]["sse_per_image"], rel=1e-4)
      assert row["pca_components"] == min(k, d) and row["ae_mse"] == pytest.approx(
          row["ae_sse_per_image"] / d)
    assert numbers["pca30"]["components"] == min(30, d)
    assert "hinton_salakhutdinov" not in numbers["pca30"]  # MNIST's figure, not theirs
    assert f"vanilla model {d}-k-{d}" in text and "784" not in text
    assert (folder / "error_vs_code_size.png").read_bytes()[:4] == b"\x89PNG"
  vectors = reports["vectors"][2]
  assert vectors["sweep"]["16"]["pca_sse_per_image"] == pytest.approx(0, abs=1e-6)  # k >= D
  assert "linear output" in reports["vectors"][3] and "sigmoid output" in reports["colour"][3]


@pytest.mark.slow
def test_probes_run_on_labelled_colour_and_say_why_not_on_unlabelled_vectors(reports):
  colour = reports["colour"][2]["features"]
  assert colour["raw_pixels"]["logistic"] >= 0 and set(colour) == {
      "raw_pixels", *(f"vanilla_k{k}" for k in SIZES)}
  assert colour["vanilla_k16"]["code_size"] == 16
  assert "| raw pixels | 3072 |" in reports["colour"][3]
  text = reports["vectors"][3]
  section = text[text.index("## 3. Codes as features"):text.index("## 4.")].strip()
  assert len(section.splitlines()) == 3  # the heading, a blank line, one line
  assert section.endswith("to measure codes as features.")
  assert "No probe: npz:" in section and "all have label 0" in section
  for kind in reports:  # no map2d run: one line, no figure
    assert "No 2-D map: " in reports[kind][3]
    assert not (reports[kind][1] / "code_maps_2d.png").exists()


def test_runs_of_two_data_sets_are_refused_in_one_line(tmp_path, monkeypatch):
  """A report measures runs of one data set: a results.json of other data is named."""
  runs = tmp_path / "runs"
  np.savez(tmp_path / "a.npz", train=RNG.standard_normal((40, 4)).astype(np.float32),
           test=RNG.standard_normal((8, 4)).astype(np.float32))
  config = vanilla.get_config()
  config.dataset, config.num_epochs, config.batch_size = f"npz:{tmp_path / 'a.npz'}", 1, 8
  config.model.code_size = 2
  trainer.train_and_evaluate(config, str(runs / "vanilla_k2"))
  other = runs / "vanilla_k4"
  other.mkdir()
  (other / "results.json").write_text(json.dumps(
      {"dataset": {"name": "cifar10", "fingerprint": "f" * 64}}))
  with pytest.raises(data.DataError, match=r"vanilla_k4 trained on cifar10 .* one report "
                     r"measures runs of one data set") as info:
    report.codes_report(tmp_path / "out", runs)
  assert "\n" not in str(info.value)
