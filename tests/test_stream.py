"""config.input: 'stream' reads the train set from array_record files through
a grain pipeline and trains on exactly the device path's batches; 'auto' picks.

Through the CLI on the bundled sample (vanilla, batch 256: 23 steps an epoch), which
the stream first writes as array_record into the test's TFDS data dir.
"""

import json
import pathlib
import signal
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARGS = ("--config=experiments/configs/vanilla.py", "--config.dataset=mnist_sample",
        "--config.batch_size=256", "--config.num_epochs=3")


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


def train_lines(workdir) -> list[dict]:
  return [json.loads(l)["train"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cli):
  """The same 3-epoch run with input 'auto' (on a CPU: the device path) and 'stream'."""
  device, stream = tmp_path_factory.mktemp("device"), tmp_path_factory.mktemp("stream")
  tfds = tmp_path_factory.mktemp("tfds")  # where the stream keeps its array_record copy
  env = {"TFDS_DATA_DIR": str(tfds)}
  logs = {"device": cli.run(device, *ARGS, "--config.input=auto", devices=1, env=env).stderr,
          "stream": cli.run(stream, *ARGS, "--config.input=stream", devices=1, env=env).stderr}
  return types.SimpleNamespace(device=device, stream=stream, logs=logs, tfds=tfds)


@pytest.mark.slow
def test_stream_trains_on_the_device_paths_batches_to_the_same_model(runs):
  assert "Input: device (config.input='auto': the train set (4 MiB) stays in host-backed " \
         "cpu device memory, which reports no limit)." in runs.logs["device"]
  assert "Streaming the train set from" in runs.logs["stream"]
  assert "Writing mnist_sample once as array_record" in runs.logs["stream"]
  device, stream = results(runs.device), results(runs.stream)
  assert (device["input"], stream["input"]) == ("device", "stream")
  assert stream["steps"] == device["steps"] == 69
  # The same batches and the same updates: every epoch's mean train loss and the test
  # metrics are equal bit for bit (the step is the same function; only its input
  # arrives differently).
  assert train_lines(runs.stream) == train_lines(runs.device)
  assert stream["test"] == device["test"]


@pytest.mark.slow
def test_a_killed_stream_run_resumes_at_the_next_batch_and_equals_the_uninterrupted_run(
    tmp_path, runs, monkeypatch, cli):
  """SIGKILLed after epoch 2's checkpoint: the checkpoint holds the stream's position,
  the rerun's stream starts at epoch 3's first batch and ends where the uninterrupted
  run ended, bit for bit."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(runs.tfds))
  marker = tmp_path / "paused"
  child = cli.start_child(tmp_path / "run", "after_checkpoint:2", marker, *ARGS,
                          "--config.input=stream")
  cli.wait_for(marker, child)
  child.send_signal(signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL
  meta = json.loads((tmp_path / "run" / "checkpoints" / "46" / "meta" / "metadata").read_text())
  position = meta["input"]["stream"]
  chunks_per_epoch = -(-23 // position["chunk_batches"])
  assert (position["epoch"], position["batch"]) == (2, 0)
  assert position["iterator"] == {"next_index": 2 * chunks_per_epoch}
  proc = cli.run(tmp_path / "run", *ARGS, "--config.input=stream", devices=1,
                 env={"TFDS_DATA_DIR": str(runs.tfds)})
  assert (f"from epoch 3, batch 1 (iterator state {{'next_index': {2 * chunks_per_epoch}}})"
          in proc.stderr)
  assert train_lines(tmp_path / "run") == train_lines(runs.stream)
  assert results(tmp_path / "run")["test"] == results(runs.stream)["test"]


@pytest.mark.slow
def test_two_processes_of_4_devices_each_stream_their_rows_into_the_one_device_model(
    tmp_path, runs, cli, assert_same_training):
  """8 devices in all, each process feeding half of every global batch, train the
  model the one-device stream trained (up to the order of float sums)."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = [cli.start(tmp_path, *ARGS, "--config.input=stream",
                     f"--coordinator_address=localhost:{port}", "--num_processes=2",
                     f"--process_id={i}", devices=4, env={"TFDS_DATA_DIR": str(runs.tfds)})
           for i in range(2)]
  logs = []
  for proc in procs:
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    logs.append(stderr)
  assert "this process feeds rows 0:128 of each batch" in logs[0]
  assert "this process feeds rows 128:256 of each batch" in logs[1]
  run = results(tmp_path)
  assert (run["num_devices"], run["num_processes"], run["input"]) == (8, 2, "stream")
  assert all("Writing mnist_sample once" not in log for log in logs)  # the copy is kept
  assert_same_training(run["test"], results(runs.stream)["test"])


def test_auto_streams_when_the_train_set_would_crowd_the_device(monkeypatch):
  from aejax import engine
  config = types.SimpleNamespace(input="auto")
  device = lambda stats: types.SimpleNamespace(memory_stats=lambda: stats)
  monkeypatch.setattr(engine.jax, "local_devices", lambda: [device({"bytes_limit": 16 * 2**30})])
  assert engine.resolve_input(config, 47 * 2**20)[0] == "device"
  monkeypatch.setattr(engine.jax, "local_devices",
                      lambda: [device({"bytes_limit": 16 * 2**30}), device({"bytes_limit": 2**30})])
  mode, why = engine.resolve_input(config, 300 * 2**20)
  assert mode == "stream" and "more than 25% of the 1.0 GiB" in why
  monkeypatch.setattr(engine.jax, "local_devices", lambda: [device(None)])
  assert engine.resolve_input(config, 300 * 2**30)[0] == "device"


def test_an_unknown_input_is_refused_in_one_line(tmp_path, cli):
  proc = cli.run(tmp_path, *ARGS, "--config.input=disk", devices=1, check=False)
  assert proc.returncode == 1
  assert [l for l in proc.stderr.splitlines() if l.startswith("error:")] == [
      "error: config.input='disk' is unknown; choose one of ['auto', 'device', 'stream']."]
  assert not (tmp_path / "checkpoints").exists()



def test_step_mode_streams_one_batch_per_call_to_the_same_state(monkeypatch, tmp_path):
  """The conv nets' mode on a CPU: one compiled step per streamed batch, in the device
  path's order, to the device path's state."""
  import jax
  from aejax import data, engine, inputs
  from experiments.configs import vanilla
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  dataset = data.load_sample()
  config = vanilla.get_config()
  config.batch_size, config.epoch_mode, config.input = 512, "step", "stream"
  run = engine.setup(config, dataset)
  assert run.plan.chunk_steps == 1
  stream = inputs.open_input(run, dataset)
  assert isinstance(stream, inputs.StreamInput)
  # The stream's order, computed on the host, is the device path's, epoch by epoch.
  for epoch in (0, 1, 7):
    state = run.state.replace(step=run.state.step + epoch * run.plan.steps_per_epoch)
    np.testing.assert_array_equal(stream.epoch_order(epoch), np.asarray(
        run.program.start_epoch(state, run.keys.shuffle)))
  assert not np.array_equal(stream.epoch_order(0), stream.epoch_order(1))
  fresh = lambda: jax.tree.map(lambda x: x.copy(), run.state)  # the epochs donate it
  streamed, streamed_history = stream.train_epoch(fresh(), 0)
  device = inputs.DeviceInput(run, dataset.train_images)
  on_device, history = device.train_epoch(fresh(), 0)
  assert int(streamed.step) == int(on_device.step) == 11
  np.testing.assert_array_equal(streamed_history["loss"], history["loss"])
  for a, b in zip(jax.tree.leaves(streamed.params), jax.tree.leaves(on_device.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_device_path_does_not_import_grain():
  """grain is imported only to stream: a machine without it still trains with 'device'."""
  code = ("import sys; from experiments import main, benchmark; from aejax import train; "
          "print(sorted(m for m in ('grain', 'aejax.data.stream') if m in sys.modules))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]
