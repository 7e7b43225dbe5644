"""experiments.data_bench: the folders it makes, the figures it reports, the targets'
verdicts. Behaviour only, never how fast."""

import json

import numpy as np
import pytest
from PIL import Image

from experiments import loading


def test_the_folders_are_made_once_and_the_larger_one_extends_the_smaller(tmp_path):
  small = loading.make_folder(tmp_path, 16)
  files = sorted(small.rglob("*.jpg"))
  assert len(files) == 16 and {p.parent.name for p in files} == set(loading.PHOTOS)
  with Image.open(files[0]) as image:
    assert image.format == "JPEG" and image.size == (128, 128) and image.mode == "RGB"
  marker = small / loading.PHOTOS[0] / "marker.jpg"
  marker.write_bytes(files[0].read_bytes())
  assert loading.make_folder(tmp_path, 16) == small and marker.exists()  # reused
  large = loading.make_folder(tmp_path, 32)
  for path in files:  # the same seed per index: the 4x folder holds the 1x one
    assert (large / path.relative_to(small)).read_bytes() == path.read_bytes()
  small.with_suffix(".json").unlink()  # not known whole: made again
  loading.make_folder(tmp_path, 16)
  assert not marker.exists() and len(list(small.rglob("*.jpg"))) == 16


@pytest.mark.slow
def test_a_small_run_reports_every_figure(cli, tmp_path):
  out = tmp_path / "bench.json"
  proc = cli.run_module("experiments.data_bench", "--num_images=60", "--repeats=1",
                        "--image_size=16", "--notorchvision", "--norss",
                        f"--folders={tmp_path / 'folders'}", f"--json={out}")
  report = json.loads(out.read_text())
  assert report["folder"]["images"] == 60 and report["folder"]["megabytes"] > 0
  loads = report["loads"]
  for name in ("pillow", "aejax_first", "aejax_second"):
    figures = loads[name]
    assert figures["images"] == 60 and figures["shape"] == [16, 16, 3]
    assert figures["images_per_s"] > 0 and len(figures["seconds_each"]) == 1
    assert figures["peak_rss_bytes"] > 0
  assert loads["aejax_first_over_second"] > 0 and loads["aejax_same_data"] is True
  assert [len(report["runs"][name]) for name in ("pillow", "aejax_first", "aejax_second",
                                                 "torchvision")] == [1, 1, 1, 0]
  assert "--notorchvision" in loads["torchvision"]["skipped"]
  assert "--norss" in report["rss"]["skipped"]
  assert [t["name"] for t in report["targets"]] == list(loading.TARGETS)
  assert report["targets"][2]["passed"] is None  # RSS not measured
  assert all(isinstance(t["passed"], bool) for t in report["targets"][:2])
  projection = report["projection"]
  assert projection["images"] == 1_281_167
  assert projection["seconds_from_full_size_jpegs"] > projection["seconds_from_crop_sized_jpegs"]
  assert "| serial Pillow loop (today's floor) |" in proc.stdout
  assert "Projected, not measured" in proc.stdout


def _report(first_rate, ratio, rss_1x, rss_4x):
  load = lambda rate: {"images": 100, "shape": [16, 16, 3], "seconds": 100 / rate,
                       "images_per_s": rate, "peak_rss_bytes": 2**27}
  run = lambda n, rss: {"n_train": n, "wall_seconds": 9.0, "peak_rss_bytes": rss}
  report = {"machine": "2-core CPU", "image_size": 16, "repeats": 1,
            "loads": {"pillow": load(1000.0), "aejax_first": load(first_rate),
                      "aejax_second": load(first_rate * ratio),
                      "torchvision": {"skipped": "skipped (--notorchvision)"},
                      "aejax_first_over_second": ratio},
            "rss": {"1x": run(90, rss_1x), "4x": run(360, rss_4x),
                    "ratio_4x_over_1x": rss_4x / rss_1x},
            "projection": loading.projection(first_rate)}
  report["targets"] = loading.targets(report)
  return report


@pytest.mark.parametrize("first_rate, ratio, rss_4x, verdicts", [
    (1700.0, 20.0, 1.14, [True, True, True]),
    (1690.0, 19.9, 1.15, [False, False, False])])
def test_each_target_passes_at_its_bound_and_fails_below_it(first_rate, ratio, rss_4x,
                                                            verdicts):
  report = _report(first_rate, ratio, 2.0**30, rss_4x * 2.0**30)
  assert [t["passed"] for t in report["targets"]] == verdicts
  table = loading.table(report)
  marks = [line.rsplit("|", 2)[1].strip() for line in table.splitlines()
           if line.startswith("| aejax") or "(4x)" in line]
  assert marks == ["pass" if v else "FAIL" for v in verdicts]
  assert "would take" in table and "at 16x16 from JPEGs" in table
  assert np.isclose(report["projection"]["seconds_from_crop_sized_jpegs"],
                    1_281_167 / first_rate)


def test_a_folder_too_small_to_split_is_one_line(cli, tmp_path):
  proc = cli.run_module("experiments.data_bench", "--num_images=5",
                        f"--folders={tmp_path}", check=False)
  assert proc.returncode == 1 and not list(tmp_path.iterdir())
  assert proc.stderr.strip().splitlines() == [
      "error: --num_images must be >= 20 (both splits need images), got 5."]
