"""The report command end to end on the bundled sample (--quick: one epoch per run)."""

import json
import re

import pytest

from aejax import data
from experiments import report


@pytest.mark.slow
def test_quick_report_writes_every_table_and_figure(tmp_path):
  command = f"python -m experiments.report --workdir {tmp_path} --quick"
  numbers = report.make_report(tmp_path, quick=True, command=command)

  text = (tmp_path / "REPORT.md").read_text()
  assert command in text.splitlines()[4]
  for n in range(1, 10):
    assert re.search(rf"^## {n}\. ", text, re.M) or f"and {n}. " in text, n
  for figure in report.FIGURES:
    assert (tmp_path / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    assert f"({figure})" in text, figure
    assert (tmp_path / figure).stat().st_size < 200_000, figure
  # One table row per sweep size, JPEG quality, sparsity weight and run.
  assert len(re.findall(r"^\| \d+ \| \d+ \|", text, re.M)) == len(report.QUICK.sweep_sizes)
  assert len(re.findall(r"^\| MNIST test \| JPEG q=", text, re.M)) == len(
      report.QUICK.jpeg_qualities)
  assert len(re.findall(r"^\| [\w.]+ \| 1 \| [\d.]+ \| [\d.]+ \|", text, re.M)) == len(
      numbers["runs"])

  saved = json.loads((tmp_path / "report.json").read_text())
  assert saved["dataset"]["source"] == "bundled_sample"
  assert set(saved) >= {"pca30", "sweep", "features", "maps_2d", "denoising", "sparsity",
                        "compression", "deep", "runs"}
  assert all(run["epochs"] == 1 for run in saved["runs"].values())
  assert (tmp_path / "runs" / "deep" / "results.json").exists()
  # Numbers that hold after any amount of training.
  for k, row in saved["sweep"].items():
    assert row["pca_components"] == min(int(k), 784) and row["ae_sse_per_image"] > 0
  assert saved["pca30"]["sse_per_image"] > saved["sweep"]["32"]["pca_sse_per_image"]
  for entry in saved["compression"]["MNIST test"]:
    assert entry["file_bytes"] > 0 and entry["psnr_db"] > 0


def test_report_names_a_missing_data_folder_before_any_compute(tmp_path):
  with pytest.raises(data.DataError, match="does not exist"):
    report.make_report(tmp_path / "out", data_dir=str(tmp_path / "no_such_folder"))
  assert not (tmp_path / "out").exists()
