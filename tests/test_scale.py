"""Data-parallel training: forced CPU devices and real extra processes.

Each case runs in a subprocess, because JAX fixes its device count when it starts:
``JAX_NUM_CPU_DEVICES=8`` gives eight CPU devices, and two processes joined by
``--coordinator_address`` (gloo collectives) make one run over both.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A constant learning rate: a run resumed with more epochs then trains as a longer
# run would from the start, so every case compares with one 2-epoch run.
BASE = ("--config=experiments/configs/vanilla.py", "--config.dataset=mnist_sample",
        "--config.batch_size=256", "--config.schedule=constant")


def python(code: str, devices: int) -> str:
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                        env={**os.environ, "JAX_NUM_CPU_DEVICES": str(devices)},
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, cli):
  workdir = tmp_path_factory.mktemp("one")
  cli.run(workdir, *BASE, "--config.num_epochs=2", devices=1)
  return results(workdir)


@pytest.mark.slow
def test_eight_devices_train_the_same_model_and_restore_on_one(tmp_path, one_device, cli,
                                                              assert_same_training):
  cli.run(tmp_path / "eight", *BASE, "--config.num_epochs=2", devices=8)
  eight = results(tmp_path / "eight")
  assert (eight["num_devices"], eight["num_processes"], eight["mesh"]) == (8, 1, {"data": 8})
  assert_same_training(eight["test"], one_device["test"])
  # Written on 8 devices, resumed on 1 (and back): the checkpoint is resharded.
  cli.run(tmp_path / "eight", *BASE, "--config.num_epochs=3", devices=1)
  assert results(tmp_path / "eight")["num_devices"] == 1
  cli.run(tmp_path / "one", *BASE, "--config.num_epochs=1", devices=1)
  cli.run(tmp_path / "one", *BASE, "--config.num_epochs=2", devices=8)
  assert_same_training(results(tmp_path / "one")["test"], one_device["test"])


@pytest.mark.slow
def test_two_processes_make_one_run_and_only_process_0_writes(tmp_path, one_device, cli,
                                                              assert_same_training):
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = [cli.start(tmp_path, *BASE, "--config.num_epochs=2",
                     f"--coordinator_address=localhost:{port}", "--num_processes=2",
                     f"--process_id={i}", devices=2) for i in range(2)]
  for proc in procs:
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
  run = results(tmp_path)
  assert (run["num_devices"], run["num_processes"]) == (4, 2)
  assert_same_training(run["test"], one_device["test"])
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1, 2]  # not one set per process
  assert len(list((tmp_path / "tensorboard").iterdir())) == 1
  # Two processes' checkpoint, one process's resume.
  cli.run(tmp_path, *BASE, "--config.num_epochs=3", devices=1)
  assert [json.loads(l)["epoch"] for l in
          (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_the_process_flags_go_together(tmp_path, cli):
  proc = cli.run(tmp_path, *BASE, "--num_processes=2", devices=1, check=False)
  assert proc.returncode == 2 and "go together" in proc.stderr


def test_a_batch_that_does_not_divide_over_the_devices_is_refused(tmp_path, cli):
  proc = cli.run(tmp_path, *BASE, "--config.batch_size=100", devices=8, check=False)
  assert proc.returncode == 1
  assert "batch_size=100 is the global batch and must divide by the 8 devices" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_the_step_is_partitioned_and_its_noise_does_not_depend_on_the_devices(tmp_path):
  """On 8 devices the compiled step all-reduces the gradient and moves no rows between
  devices (strided chunks); the gaussian noise of a sharded batch is the noise of the
  same batch on one device (jax_threefry_partitionable)."""
  assert jax.config.jax_threefry_partitionable
  out = python(f"""
      import jax, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from aejax import corruption, data, engine, sharding as sharding_lib
      from experiments.configs import vanilla
      config = vanilla.get_config()
      config.batch_size, config.microbatch_size, config.epoch_mode = 64, 16, "step"
      run = engine.setup(config, data.DataSpec((28, 28, 1), 256))
      images = sharding_lib.put(run.mesh, np.zeros((256, 28, 28, 1), np.uint8))
      order = run.program.start_epoch(run.state, run.keys.shuffle)
      sharding = NamedSharding(run.mesh, P("data"))
      step = lambda s, im, o, k: run.program.train_step(
          s, jax.lax.with_sharding_constraint(im[o[0]], sharding), k)
      hlo = jax.jit(step).lower(run.state, images, order, run.keys.noise).compile().as_text()
      x = jax.device_put(np.full((64, 28, 28, 1), 0.5, np.float32), sharding)
      noisy = jax.jit(corruption.make("gaussian", 0.5))(jax.random.key(3), x)
      np.save("{tmp_path / 'noisy.npy'}", np.asarray(noisy))
      print(jax.device_count(), hlo.count("all-reduce"), hlo.count("collective-permute"))
      """, devices=8)
  devices, all_reduces, permutes = map(int, out.split())
  assert devices == 8 and all_reduces > 0 and permutes == 0
  from aejax import corruption
  one = jax.jit(corruption.make("gaussian", 0.5))(jax.random.key(3),
                                                  np.full((64, 28, 28, 1), 0.5, np.float32))
  # The same draws; the normal transform may round differently when compiled for 8.
  np.testing.assert_allclose(np.load(tmp_path / "noisy.npy"), np.asarray(one), atol=1e-6,
                             rtol=0)
