"""The benchmark: no host↔device traffic inside an epoch; the command, its JSON and errors.

Behaviour only: what the benchmark reports and that it reports it, never how fast.
"""

import contextlib
import json

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from aejax import data, engine, models
from experiments import bench, benchmark
from experiments.configs import vanilla

N, BATCH = 96, 32


@pytest.mark.parametrize("mode", ["scan", "step"])
def test_an_epoch_moves_nothing_between_host_and_device(mode):
  """Once the images are on the device, a whole epoch (compiling included) runs with
  every implicit transfer forbidden, noise included."""
  config = vanilla.get_config()
  config.model.update(code_size=8, hidden=(16,))
  config.batch_size, config.microbatch_size, config.epoch_mode = BATCH, BATCH // 2, mode
  config.corruption.name, config.corruption.level = "gaussian", 0.5
  run = engine.setup(config, data.DataSpec(image_shape=(28, 28, 1), n_train=N))
  state = run.state
  images = jax.device_put(np.random.default_rng(0).integers(0, 256, (N, 28, 28, 1), np.uint8))
  for _ in range(2):  # the first epoch compiles, the second reuses
    with jax.transfer_guard("disallow"):
      order = run.program.start_epoch(state, run.keys.shuffle)
      state, history = run.program.run_chunk(state, images, order, run.keys.noise,
                                             N // BATCH)
      jax.block_until_ready((state, history))
  assert int(state.step) == 2 * (N // BATCH)
  assert np.all(np.isfinite(jax.device_get(history["loss"])))


def test_benchmark_images_take_or_repeat_the_data():
  sample = data.load_sample().train_images
  few, test, source = bench.benchmark_images(100)
  np.testing.assert_array_equal(few, sample[:100])
  assert few.dtype == np.uint8 and test.shape[1:] == (28, 28, 1) and "sample" in source
  many, _, source = bench.benchmark_images(len(sample) + 10)
  assert many.shape == (len(sample) + 10, 28, 28, 1) and "repeated" in source
  np.testing.assert_array_equal(many[len(sample):], sample[:10])
  with pytest.raises(ValueError, match="num_images"):
    bench.benchmark_images(0)


def test_scan_and_step_measurements_agree_on_the_loss():
  images, test_images, _ = bench.benchmark_images(2 * N)
  config = bench.benchmark_config(vanilla.get_config(), batch_size=BATCH, num_epochs=2)
  measured = [bench.time_jax("vanilla", config, images, test_images, epoch_mode=mode)
              for mode in ("scan", "step")]
  for m in measured:
    assert len(m.epoch_seconds) == 2 and m.median_epoch_s > 0 and m.compile_s >= 0
    assert m.examples_per_s == pytest.approx(2 * N / m.median_epoch_s)
    assert m.peak_rss_bytes > 0 and 0 < m.test_mse < 1
  assert [m.epoch_mode for m in measured] == ["scan", "step"]
  assert measured[0].final_loss == pytest.approx(measured[1].final_loss, rel=1e-4)
  table = bench.table(measured)
  assert table.count("\n") == 3 and "| aejax | vanilla | 1 | scan |" in table


def test_members_train_in_one_program_and_are_compared_with_one_member():
  images, test_images, _ = bench.benchmark_images(N)
  config = bench.benchmark_config(vanilla.get_config(), batch_size=BATCH, num_epochs=2)
  one = bench.time_jax("vanilla", config, images, test_images, epoch_mode="scan")
  config.sweep = "seed=0:3"
  three = bench.time_jax("vanilla", config, images, test_images, epoch_mode="scan")
  assert (one.members, three.members) == (1, 3)
  assert three.test_mse == pytest.approx(one.test_mse, rel=1e-4)  # member 0 is seed 0
  [line] = bench.member_ratios([one, three])
  ratio = three.median_epoch_s / (3 * one.median_epoch_s)
  assert line.startswith("vanilla: 3 members in one program") and f"ratio {ratio:.2f};" in line
  assert "| 3 |" in bench.table([three])


def test_member_ratio_is_the_median_over_pairs_measured_in_turn():
  def measured(members, epoch_s, **setting):
    return bench.Measurement("aejax", "vanilla", "scan", "float32", 256, 512, 256,
                             [9.0, epoch_s, epoch_s], 0.0, None, 1, 0.1, 0.1, "cpu",
                             members=members, **setting)
  # Three repeats of (1 member, 3 members): per-pair ratios 1.1, 1.5 and 1.0.
  runs = [measured(1, 1.0), measured(3, 3.3), measured(1, 2.0), measured(3, 9.0),
          measured(1, 1.0), measured(3, 3.0),
          # Another setting pairs only with its own one-member run.
          measured(1, 1.0, input="stream"), measured(3, 6.0, input="stream")]
  [repeated, streamed] = bench.member_ratios(runs)
  assert "ratio 1.10 (median of 3 pairs measured in turn: 1.00-1.50); fastest epochs: " \
      "ratio 1.00" in repeated
  assert "3.3 s/epoch vs 3 x one member's 1 s" in repeated
  assert streamed.endswith("ratio 2.00; fastest epochs: ratio 2.00")


def test_time_to_quality_stops_at_the_target_or_at_the_last_epoch():
  images, test_images, _ = bench.benchmark_images(2 * N)
  config = vanilla.get_config()
  config.batch_size, config.num_epochs = BATCH, 3
  easy = bench.time_to_quality(config, images, test_images, target_mse=1.0)
  assert easy["reached"] and easy["epochs"] == 1 and easy["seconds"] > 0
  never = bench.time_to_quality(config, images, test_images, target_mse=0.0)
  assert not never["reached"] and never["epochs"] == 3
  seconds = [point["seconds"] for point in never["curve"]]
  assert seconds == sorted(seconds)


def test_command_writes_table_and_json(tmp_path, cli):
  out = tmp_path / "bench.json"
  proc = cli.run_module("experiments.benchmark", "--models=multilayer", "--num_images=512",
                        "--num_epochs=2", "--epoch_modes=auto,step", f"--json={out}")
  report = json.loads(out.read_text())
  rows = report["measurements"]
  assert [(r["model"], r["epoch_mode"]) for r in rows] == [
      ("multilayer", engine.resolve_epoch_mode(vanilla.get_config())), ("multilayer", "step")]
  for r in rows:
    assert r["num_images"] == 512 and r["batch_size"] == 256 and r["median_epoch_s"] > 0
    assert r["microbatch_size"] == 256  # auto: a dense net's batch fits the caches whole
    assert np.isfinite(r["final_loss"]) and len(r["epoch_seconds"]) == 2
  assert report["jax"] == jax.__version__
  assert "| aejax | multilayer | 1 | step | float32 | 256 | 512 |" in proc.stdout


def test_time_to_quality_command_warms_the_compilation_cache(tmp_path, cli):
  out = tmp_path / "ttq.json"
  cli.run_module("experiments.benchmark", "--models=", "--time_to_quality", "--target_mse=1.0",
                 f"--json={out}")
  runs = json.loads(out.read_text())["time_to_quality"]
  assert runs["cold"]["cache_entries_at_start"] == 0
  assert runs["warm_cache"]["cache_entries_at_start"] > 0
  assert all(r["reached"] and r["epochs"] == 1 for r in runs.values())


def test_devices_flag_trains_data_parallel_and_reports_per_device(tmp_path, cli):
  out = tmp_path / "bench.json"
  proc = cli.run_module("experiments.benchmark", "--models=vanilla", "--num_images=512",
                        "--num_epochs=2", "--devices=1,4", f"--json={out}")
  rows = json.loads(out.read_text())["measurements"]
  assert [r["num_devices"] for r in rows] == [1, 4]
  for r in rows:
    assert r["examples_per_s_per_device"] == pytest.approx(r["examples_per_s"] / r["num_devices"])
  assert rows[0]["final_loss"] == pytest.approx(rows[1]["final_loss"], rel=1e-4)
  assert "| aejax | vanilla | 4 |" in proc.stdout


@contextlib.contextmanager
def command_line(*argv: str):
  """The benchmark's flags as the command line ``argv`` sets them (``--name=value``
  each), then as they were: what ``benchmark.validate`` reads when ``main`` calls it."""
  FLAGS = flags.FLAGS
  was_parsed = FLAGS.is_parsed()
  with flagsaver.as_parsed(**dict(a.removeprefix("--").split("=", 1) for a in argv)):
    FLAGS.mark_as_parsed()
    try:
      yield
    finally:
      if not was_parsed:
        FLAGS.unparse_flags()


@pytest.mark.parametrize("flag, message", [
    ("--models=vanilla,resnet", "unknown ['resnet']"),
    ("--num_epochs=1", "--num_epochs must be >= 2"),
    ("--batch_size=1000", "--batch_size must be in"),
    ("--epoch_modes=fast", "--epoch_modes"),
    ("--microbatch_sizes=0,100", "--microbatch_sizes: use 0 (auto) or divisors"),
    ("--learning_rate=0", "--learning_rate must be > 0"),
    ("--devices=3", "--devices: use positive divisors of --batch_size=256"),
    ("--members=0", "--members: use positive integers"),
    ("--repeats=0", "--repeats must be >= 1"),
])
def test_bad_flags_are_refused_before_any_compute(flag, message):
  """``validate``, the first thing ``main`` does (the command's exit on a refusal is
  the next test's): one process for all nine, rather than a start-up each."""
  with command_line(flag, "--num_images=512"), pytest.raises(ValueError) as info:
    benchmark.validate()
  assert message in str(info.value)
  with command_line("--num_images=512"):
    benchmark.validate()  # the defaults pass


def test_a_refused_flag_exits_with_its_message_and_computes_nothing(cli):
  proc = cli.run_module("experiments.benchmark", "--devices=3", "--num_images=512",
                        check=False)
  assert proc.returncode == 1 and "s/epoch" not in proc.stdout
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --devices: use positive divisors of --batch_size=256, got ['3'].")


def test_every_benchmark_model_has_a_config():
  assert set(benchmark.MODEL_CONFIGS) == {"vanilla", "multilayer", "conv", "denoising"}


# ------------------------------------------------------------- PyTorch (optional)


@pytest.mark.parametrize("name", sorted(benchmark.MODEL_CONFIGS))
def test_torch_twin_has_the_same_parameters_and_output_bias(name):
  pytest.importorskip("torch", reason="PyTorch is the optional 'bench' extra")
  from experiments import bench_torch
  config = benchmark.MODEL_CONFIGS[name].get_config()
  pixel_mean = data.load_sample().pixel_mean
  model = models.build(config.model, (28, 28, 1), pixel_mean=pixel_mean)
  params = models.init_variables(model, config.model, (28, 28, 1), jax.random.key(0))["params"]
  twin = bench_torch.build(config.model, pixel_mean=pixel_mean)
  assert sum(p.numel() for p in twin.parameters()) == sum(
      np.prod(p.shape) for p in jax.tree.leaves(params))
  decoder = params["decoder"]
  jax_bias = decoder[max(decoder, key=lambda name: int(name.split("_")[-1]))]["bias"]
  torch_bias = list(twin.parameters())[-1].detach().numpy()
  np.testing.assert_allclose(torch_bias, jax_bias, rtol=1e-6)


def test_compare_torch_prints_the_ratio(tmp_path, cli):
  pytest.importorskip("torch", reason="PyTorch is the optional 'bench' extra")
  out = tmp_path / "bench.json"
  proc = cli.run_module("experiments.benchmark", "--models=vanilla", "--num_images=512",
                        "--num_epochs=2", "--compare=torch", f"--json={out}")
  rows = json.loads(out.read_text())["measurements"]
  assert [r["framework"] for r in rows] == ["aejax", "pytorch"]
  torch_row = rows[1]
  assert torch_row["epoch_mode"] == "eager" and torch_row["compile_s"] is None
  assert 0 < torch_row["test_mse"] < 1 and np.isfinite(torch_row["final_loss"])
  assert "vs PyTorch eager" in proc.stdout
