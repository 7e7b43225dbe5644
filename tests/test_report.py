"""The report command end to end on the bundled sample (--quick: one epoch per run).

One quick report is made once for the module and shared by the checks below: it is
the expensive part (every run of the study, trained for one epoch)."""

import dataclasses
import json
import re

import numpy as np
import pytest

from aejax import data
from experiments import report
from experiments.report import prose, seeds as report_seeds, vae as report_vae


@pytest.fixture(scope="module")
def quick(tmp_path_factory, cli):
  """``(folder, REPORT.md text, report.json, the command)`` of one quick run, made by the
  command (optimised: most of its time is conv training)."""
  folder = tmp_path_factory.mktemp("quick_report")
  flags = [f"--workdir={folder}", "--quick"]
  cli.run_module("experiments.report", *flags, env=cli.optimised())
  text = (folder / "REPORT.md").read_text()
  saved = json.loads((folder / "report.json").read_text())
  return folder, text, saved, " ".join(["python -m experiments.report", *flags])


@pytest.mark.slow
def test_quick_report_writes_every_table_and_figure(quick):
  folder, text, saved, command = quick
  assert command in text.splitlines()[4]
  for n in range(1, 16):
    assert re.search(rf"^## {n}\. ", text, re.M) or f"and {n}. " in text, n
  for figure in report.FIGURES:
    assert (folder / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    assert f"({figure})" in text, figure
    assert (folder / figure).stat().st_size < 200_000, figure
  # One table row per sweep size, JPEG quality, sparsity weight and run.
  assert len(re.findall(r"^\| \d+ \| \d+ \| .* \| (AE|PCA) \|", text, re.M)) == len(
      report.QUICK.sweep_sizes)
  assert len(re.findall(r"^\| MNIST test \| JPEG q=", text, re.M)) == len(
      report.QUICK.jpeg_qualities)
  assert len(re.findall(r"^\| [\w.-]+ \| 1 \| [\d.]+ \| [\d.]+ \|", text, re.M)) == len(
      saved["runs"])

  assert saved["dataset"]["source"] == "bundled_sample"
  assert set(saved) >= {"pca30", "sweep", "features", "maps_2d", "denoising", "sparsity",
                        "compression", "deep", "runs", "contractive", "frontier", "vqvae",
                        "vae", "codecs", "seeds"}
  assert all(run["epochs"] == 1 for run in saved["runs"].values())
  assert (folder / "runs" / "deep" / "results.json").exists()
  # Numbers that hold after any amount of training.
  for k, row in saved["sweep"].items():
    assert row["pca_components"] == min(int(k), 784) and row["ae_sse_per_image"] > 0
  assert saved["pca30"]["sse_per_image"] > saved["sweep"]["32"]["pca_sse_per_image"]
  for entry in saved["compression"]["MNIST test"]:
    assert entry["file_bytes"] > 0 and entry["psnr_db"] > 0


@pytest.mark.slow
def test_quick_report_codec_section_measures_each_prior_in_real_bytes(quick):
  folder, text, saved, _ = quick
  plan = report.QUICK
  codecs = saved["codecs"]
  assert set(codecs["runs"]) == set(report.CODEC_RUNS)
  for name, run in codecs["runs"].items():
    # Each prior's λ values are one sweep run, with a point per member.
    assert run["members"] == len(plan.codec_lambdas) and (folder / "runs" / name /
                                                         "results.json").exists()
    assert run["sweep"] == "losses.rate=" + ",".join(plan.codec_lambdas)
    points = codecs["members"][name]
    assert sorted(p["setting"] for p in points) == sorted(f"rate={l}" for l in
                                                          plan.codec_lambdas)
    for p in points:
      # Real bytes: whole strings, never fewer than the model's estimate allows.
      assert p["bytes"] >= 1 and p["overhead_bytes"] > -1e-6 and 0 < p["ssim"] <= 1
      assert f"| {p['setting'].removeprefix('rate=')} | " in text
  assert set(codecs["datasets"]) == {"MNIST test", "inverted digits", "digits shifted 4 px",
                                     "photo tiles"}
  mnist = codecs["datasets"]["MNIST test"]
  assert mnist["images"] == plan.codec_test_images
  assert codecs["datasets"]["photo tiles"]["images"] == plan.codec_tiles
  for name in report.CODEC_RUNS:
    assert set(mnist["summary"][name]) == {"JPEG scan", "JPEG file", "WebP file", "WebP VP8"}
  # One BD-rate row per data set and codec, and the verdict.
  assert len(re.findall(r"^\| [\w -]+ \| codec_\w+ \| ", text, re.M)) == 4 * 2
  assert "Verdict, for the better curve" in text


@pytest.mark.slow
def test_quick_report_contractive_section_measures_the_three_models(quick):
  _, text, saved, _ = quick
  models = saved["contractive"]["models"]
  assert set(models) >= set(report.CAE_RUNS)
  assert models["cae_denoising"]["corruption"]["name"] == "gaussian"
  assert "contractive" in models["cae_contractive"]["losses"]
  for model in models.values():
    assert model["jacobian_frobenius_sq_mean"] > 0
    moved = model["noise"]
    assert [m["sigma"] for m in moved] == list(report.QUICK.cae_sigmas)
    assert 0 < moved[0]["displacement"] < moved[1]["displacement"]  # more noise, more motion
    assert all(0 < m["relative"] < m["displacement"] / m["code_spread"] * 1.0001 for m in moved)
  # One row each in section 10's table (section 9 lists them again among every run).
  assert len(re.findall(r"^\| cae_\w+ \| (plain|denoising|contractive)", text, re.M)) == len(
      report.CAE_RUNS)


@pytest.mark.slow
def test_quick_report_frontier_vqvae_and_vae_sections(quick):
  folder, text, saved, _ = quick
  plan = report.QUICK
  runs = saved["frontier"]["runs"]
  expected = len(plan.frontier_ks) + len(plan.frontier_l1) + len(plan.frontier_noaux_ks)
  assert len(runs) == expected and (folder / "runs" / "frontier" / "frontier.json").exists()
  assert all(0 <= r["dead_fraction"] <= 1 and r["test_mse"] > 0 for r in runs)
  assert {r["model"] for r in runs} == {"topk", "l1"}
  assert "| width | k | TopK L0 |" in text

  vq = saved["vqvae"]
  assert len(vq) == len(plan.vqvae_settings)
  for (features, k), row in zip(plan.vqvae_settings, vq.values()):
    grid = 28 // 2 ** len(features)
    assert row["bits_per_image"] == pytest.approx(grid * grid * (k.bit_length() - 1))
    assert row["bytes_per_image"] == row["bits_per_image"] / 8 and row["psnr_db"] > 0
  assert re.search(r"^\| vqvae_\S+ \| 14×14 \| 16 \| 784 \| 98 \|", text, re.M)

  # No VAE/IWAE run in a fresh runs folder: the section says how to make each.
  assert saved["vae"] == {name: {"present": False, "launch": saved["vae"][name]["launch"]}
                          for name in report.LONG_RUNS}
  for name, config_file in report.LONG_RUNS.items():
    assert f"--config {config_file} --workdir {folder / 'runs' / name}" in text


def test_report_names_a_missing_data_folder_before_any_compute(tmp_path):
  with pytest.raises(data.DataError, match="does not exist"):
    report.make_report(tmp_path / "out", data_dir=str(tmp_path / "no_such_folder"))
  assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_vae_section_reads_a_trained_vae_run(tmp_path):
  from aejax import trainer
  from experiments.configs import vae
  config = vae.get_config()
  config.dataset, config.num_epochs = "mnist_sample", 1
  config.model.hidden, config.model.latent_size, config.model.eval_nll_samples = (32,), 4, 8
  results = trainer.train_and_evaluate(config, str(tmp_path / "runs" / "vae"))
  section = report_vae.vae(tmp_path / "runs", tmp_path)  # reads only the runs folder
  text = prose.vae_section(section)
  vae_numbers = section.numbers["vae"]["vae"]
  assert vae_numbers["present"] and vae_numbers["epochs"] == 1
  assert vae_numbers["nll"] == results["model_eval"]["nll"]
  assert vae_numbers["burda_nll"] == report.BURDA_VAE_NLL
  assert f"| vae | 1 | {results['backend']} | {results['model_eval']['nll']:.4g} |" in text
  assert (tmp_path / "vae_prior_samples.png").read_bytes()[:4] == b"\x89PNG"
  assert (tmp_path / "vae_curves.png").exists() and "(vae_curves.png)" in text
  assert not section.numbers["vae"]["iwae"]["present"]
  assert "experiments/configs/vae.py:iwae" in text


def test_vae_section_reads_a_run_stopped_early_from_its_evaluate_run_json(tmp_path):
  """A run stopped before its end (no results.json) is read from the JSON that
  ``experiments.evaluate_run --json`` wrote for its newest checkpoint, and says so."""
  workdir = tmp_path / "runs" / "iwae"
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps({"num_epochs": 648}))
  (workdir / "evaluate_run.json").write_text(json.dumps(
      {"epoch": 50, "model_eval": {"nll": 89.5, "elbo": -105.6}}))
  section = report_vae.vae(tmp_path / "runs", tmp_path)
  text, numbers = prose.vae_section(section), section.numbers["vae"]
  assert numbers["iwae"]["present"] and numbers["iwae"]["nll"] == 89.5
  assert "| iwae | 50 | ? | 89.5 | -105.6 | 84.78 |" in text
  assert "`iwae` was stopped after 50 of its 648 epochs" in text
  assert not numbers["vae"]["present"]  # and the VAE's command is given


def test_seeds_section_reads_a_train_all_sweep_and_states_its_verdict(tmp_path, cli):
  # vanilla as scripts/train_all.sh trains it (one seed=0:3 sweep), on the sample.
  seeds_dir = tmp_path / "seeds"
  cli.run_config("vanilla", seeds_dir / "vanilla", "--config.sweep=seed=0:3")
  r = report_seeds.seeds(seeds_dir)
  members = json.loads((seeds_dir / "vanilla" / "results.json").read_text())["members"]
  values = [m["test"]["mse"] for m in members]
  stats = r.numbers["seeds"]["vanilla"]
  assert stats["n"] == 3 and stats["values"] == values
  assert stats["mean"] == pytest.approx(np.mean(values))
  assert stats["std"] == pytest.approx(np.std(values, ddof=1))
  # One epoch on the sample is far from the 0.0050 target: not met.
  assert stats["ci95"][0] < stats["mean"] < stats["ci95"][1] and stats["met"] is False
  assert "vanilla" not in r.missing and "deep" in r.missing
  text = prose.seeds_section(r)
  assert re.search(r"^\| `vanilla` \| test\.mse \| 3 \| 1 \| [\d.]+ ± [\d.]+ ", text, re.M)
  assert f"bash scripts/train_all.sh path/to/mnist {seeds_dir}" in text
  assert 'CONFIGS="multilayer conv' in text and "; their figures over seeds" in text
  one_missing = prose.seeds_section(dataclasses.replace(r, missing=["deep"]))
  assert "`deep`; its figure over seeds, from an earlier machine, is in" in one_missing
  assert r.unusable == {}
  # A plain run where a sweep belongs is named, not read, and so is a sweep over λ.
  cli.run_config("multilayer", seeds_dir / "multilayer")
  cli.run_config("sparse", seeds_dir / "sparse", "--config.sweep=losses.l1_activity=0,1e-4")
  r = report_seeds.seeds(seeds_dir)
  assert {"multilayer", "sparse"} <= set(r.missing) and list(r.numbers["seeds"]) == [
      "vanilla"]
  assert r.unusable == {
      str(seeds_dir / "multilayer"): "a single run, not a sweep",
      str(seeds_dir / "sparse"): "a sweep over losses.l1_activity, not over the seed alone"}
  text = prose.seeds_section(r)
  assert f"`{seeds_dir / 'multilayer'}` holds a single run, not a sweep: move it aside" in text


@pytest.mark.parametrize("higher, interval, met", [
    (False, (0.0040, 0.0045), True), (False, (0.0045, 0.0052), False),
    (True, (8.5, 9.5), True), (True, (7.9, 9.5), False)])
def test_seed_verdict_needs_the_whole_interval_past_the_target(higher, interval, met):
  claim = report.SeedClaim("x", "test.mse", 8.0 if higher else 0.0050,
                           higher_is_better=higher)
  stats = {"n": 5, "ci95": list(interval)}
  assert report_seeds.verdict(claim, stats) is met
  assert report_seeds.verdict(dataclasses.replace(claim, target=None), stats) is None
