"""Many models in one program (config.sweep): the grid, the summary's statistics, a
member against its own run, one compilation for any number of members, resume after
a SIGKILL, members on a 2-D mesh, and the refusals."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import chex
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from scipy import stats

from aejax import analysis, data, engine, inputs, step as step_lib, sweep
from experiments import results_table
from experiments.configs import base, vanilla

BASE = ("--config=experiments/configs/vanilla.py", "--config.dataset=mnist_sample",
        "--config.batch_size=500")
GRID = "seed=0:2; learning_rate=1e-3,3e-3"  # four members, the learning rate fastest
# An all-reduce's device groups in HLO text, in one of three forms: explicit groups
# {{0,1},{2,3},...}, iota groups [4,2]<=[8], or mesh axes mesh['axis_0'=4,...] {'axis_1'}.
REPLICA_GROUPS = (r"all-reduce\(.*?replica_groups=(\{(?:\{[\d,]*\},?)*\}|\[[\d,]+\]<=\[\d+\]\S*"
                  r"|mesh\[[^\]]*\] \{[^}]*\})")


def within_members(group: str) -> bool:
  """Whether an all-reduce of the 4 × 2 mesh reduces over the data pairs only."""
  if group.startswith("mesh"):
    sizes = dict(re.findall(r"'(\w+)'=(\d+)", group))
    reduced = re.findall(r"'(\w+)'", group.split("{")[1])
    return int(np.prod([int(sizes[a]) for a in reduced])) == 2 and "axis_0" not in reduced
  if group.startswith("{"):  # pairs of neighbours, one member each
    pairs = [tuple(map(int, g.split(","))) for g in re.findall(r"\{([\d,]+)\}", group)]
    return all(len(p) == 2 and p[0] // 2 == p[1] // 2 for p in pairs)
  return group.startswith("[4,2]<=[8]")  # four groups of two neighbours


def sample_config(**changes):
  config = vanilla.get_config()
  config.dataset, config.batch_size, config.num_epochs = "mnist_sample", 500, 1
  for key, value in changes.items():
    config[key] = value
  return config


# ------------------------------------------------------------------- the grid


def test_the_grid_is_the_product_in_order():
  config = sample_config(sweep="seed=0:2; losses.mse=1,0.5; corruption.level=0.1")
  assert sweep.members(config) == [
      {"seed": 0, "losses.mse": 1.0, "corruption.level": 0.1},
      {"seed": 0, "losses.mse": 0.5, "corruption.level": 0.1},
      {"seed": 1, "losses.mse": 1.0, "corruption.level": 0.1},
      {"seed": 1, "losses.mse": 0.5, "corruption.level": 0.1}]
  member = sweep.member_config(config, sweep.members(config)[3])
  assert (member.seed, member.losses, member.corruption.level, member.sweep) == (
      1, "mse=0.5", 0.1, "")
  assert sweep.members(sample_config()) == []


@pytest.mark.parametrize("spec, message", [
    ("model.code_size=32,64", "cannot vary 'model.code_size'"),
    ("batch_size=64,128", "cannot vary 'batch_size'"),
    ("losses.l1_activity=1e-4", "a term config.losses does not name"),
    ("seed=0:2; seed=3:4", "names 'seed' twice"),
    ("learning_rate=fast", "are not numbers"),
    ("seed", "is not key=values"),
    ("seed=3:3", "gives no value"),
    ("learning_rate=0,1e-3", "config.learning_rate must be > 0"),
])
def test_a_sweep_that_cannot_run_is_refused_before_compute(spec, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    engine.setup(sample_config(sweep=spec), data.DataSpec((28, 28, 1), 1000))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=12))
def test_describe_matches_numpy_and_scipy(values):
  d = sweep.describe(values)
  x = np.asarray(values, np.float64)
  np.testing.assert_allclose([d["mean"], d["std"], d["min"], d["max"]],
                             [x.mean(), x.std(ddof=1), x.min(), x.max()], rtol=1e-9, atol=1e-9)
  low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x)) \
      if x.std() > 0 else (x.mean(), x.mean())
  np.testing.assert_allclose(d["ci95"], [low, high], rtol=1e-9, atol=1e-9)


def test_the_summary_groups_seeds_by_setting():
  members = [{"member": i, "overrides": {"seed": i % 2, "learning_rate": lr},
              "test": {"mse": mse}} for i, (lr, mse) in
             enumerate([(1e-3, 1.0), (1e-3, 3.0), (3e-3, 5.0), (3e-3, 9.0)])]
  summary = sweep.summary(members)
  assert [(g["setting"], g["members"]) for g in summary] == [
      ({"learning_rate": 1e-3}, [0, 1]), ({"learning_rate": 3e-3}, [2, 3])]
  assert summary[1]["metrics"]["test.mse"]["mean"] == 7.0


def test_a_nan_names_the_step_and_the_member():
  history = {"loss": np.array([[1.0, 1.0], [1.0, np.nan]]),
             "mse": np.array([[1.0, 1.0], [1.0, np.nan]])}
  with pytest.raises(step_lib.NonFiniteLossError,
                     match=r"'mse' became nan at step 12 \(sweep member 1\)"):
    step_lib.check_finite(history, first_step=10)


# -------------------------------------------------------------- one program


def test_a_member_trains_as_its_own_run_and_the_step_traces_once():
  """Member i of one compiled, vmapped epoch equals the plain run with member i's
  numbers (float tolerance: a batched matmul may round differently); the members'
  step is traced once for all of them."""
  dataset = data.load_sample()
  config = sample_config(sweep="seed=1:2; weight_decay=0,0.1; losses.mse=1,0.5")
  run = engine.setup(config, dataset)
  traced = chex.assert_max_traces(run.program.train_step, n=1)
  start, run_chunk = step_lib.make_epoch_fns(
      traced, run.plan.n_train, config.batch_size, "scan",
      numbers={k: jax.numpy.asarray(v) for k, v in run.plan.members.numbers.items()})
  images = jax.numpy.asarray(dataset.train_images)
  state, history = run_chunk(run.state, images, start(run.state, run.keys.shuffle),
                             run.keys.noise, run.plan.steps_per_epoch)
  assert history["loss"].shape == (run.plan.steps_per_epoch, 4)
  for i in (1, 3):
    member = run.plan.members.configs[i]
    own = engine.setup(member, dataset)
    own_state, own_history = inputs.open_input(own, dataset).train_epoch(own.state, 0)
    np.testing.assert_allclose(np.asarray(history["loss"])[:, i], own_history["loss"],
                               rtol=2e-5)
    for a, b in zip(jax.tree.leaves(own_state.params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a), rtol=1e-4, atol=1e-6)
  chex.clear_trace_counter()


def conv_eqns(fn, *args) -> list:
  jaxpr = jax.make_jaxpr(fn)(*args)
  found = []
  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        found.append(eqn.params["feature_group_count"])
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(jaxpr.jaxpr)
  return found


def test_conv_members_train_one_after_another_on_a_cpu_each_its_own_run_exactly():
  """On XLA:CPU a conv net's members are not vmapped (a vmapped convolution is a
  grouped one, slow there): each member's step is the plain step, so member i is bit
  for bit the run with member i's numbers."""
  dataset = data.load_sample()
  config = sample_config(sweep="seed=0:2; learning_rate=1e-3,3e-3")
  config.model, config.batch_size = base.get_config("conv").model, 100
  run = engine.setup(config, dataset)
  assert run.plan.member_group == 1 and run.record()["member_group"] == 1
  images = jax.numpy.asarray(dataset.train_images)
  state, history = run.program.run_chunk(run.state, images,
                                         run.program.start_epoch(run.state, run.keys.shuffle),
                                         run.keys.noise, 2)
  for i in (3,):  # seed 1 and the second learning rate
    own = engine.setup(run.plan.members.configs[i], dataset)
    own_state, own_history = own.program.run_chunk(
        own.state, images, own.program.start_epoch(own.state, own.keys.shuffle),
        own.keys.noise, 2)
    np.testing.assert_array_equal(np.asarray(history["loss"])[:, i], own_history["loss"])
    for a, b in zip(jax.tree.leaves(own_state.params), jax.tree.leaves(state.params)):
      np.testing.assert_array_equal(np.asarray(b[i]), np.asarray(a))
  # A group's step holds plain convolutions only; vmapped, they would be grouped.
  numbers = {k: jax.numpy.asarray(v) for k, v in run.plan.members.numbers.items()}
  member = lambda state, batch, key, n: run.program.train_step(state, batch, key, n)
  batch = jax.ShapeDtypeStruct((100, 28, 28, 1), jax.numpy.uint8)
  order = jax.numpy.zeros((4, 1, 100), jax.numpy.int32)
  images = jax.ShapeDtypeStruct((100, 28, 28, 1), jax.numpy.uint8)
  one = lambda state, images, order, key, n: member(state, images[order[0]], key, n)
  args = (run.state, images, order, run.keys.noise, 0)
  groups = {g: conv_eqns(step_lib.member_groups(one, numbers, g), *args) for g in (1, 2)}
  vmapped = conv_eqns(step_lib.over_members(run.program.train_step, numbers, (0, None, 0)),
                      run.state, batch, run.keys.noise)
  assert groups[1] and set(groups[1]) == {1}
  assert max(groups[2]) == 2 and max(vmapped) == 4


def test_sweep_vmap_in_groups_is_the_vmapped_sweep_and_needs_the_members_on_one_device():
  dataset = data.load_sample()
  runs = {g: engine.setup(sample_config(sweep="seed=0:4", sweep_vmap=g), dataset)
          for g in (0, 2)}
  assert [runs[g].plan.member_group for g in (0, 2)] == [0, 2]
  out, states = {}, {}
  for g, run in runs.items():
    states[g], history = run.program.run_chunk(
        run.state, jax.numpy.asarray(dataset.train_images),
        run.program.start_epoch(run.state, run.keys.shuffle), run.keys.noise, 3)
    out[g] = history["loss"]
  assert out[0].shape == out[2].shape == (3, 4)
  np.testing.assert_allclose(out[2], out[0], rtol=2e-5)
  # In step mode one member's step is compiled once, for every member of every step.
  traced = chex.assert_max_traces(runs[0].program.train_step, n=1)
  start, run_chunk = step_lib.make_epoch_fns(
      traced, runs[0].plan.n_train, 500, "step", numbers={}, member_group=1)
  state = states[2]
  _, history = run_chunk(state, jax.numpy.asarray(dataset.train_images),
                         start(state, runs[0].keys.shuffle), runs[0].keys.noise, 2)
  assert history["loss"].shape == (2, 4)
  chex.clear_trace_counter()

  class Spread:  # a mesh that lays 2 members on 2 devices
    shape = {"members": 2, "data": 1}
  with pytest.raises(ValueError, match=r"config.sweep_vmap=1 .* over 2 devices"):
    engine.resolve_member_group(sample_config(sweep="seed=0:2", sweep_vmap=1), Spread, 2)
  with pytest.raises(ValueError, match=r"config.sweep_vmap=2 must divide the sweep's 3"):
    engine.setup(sample_config(sweep="seed=0:3", sweep_vmap=2), dataset)
  assert engine.resolve_member_group(sample_config(sweep="seed=0:2"), Spread, 2) == 0


def test_a_one_member_sweep_is_the_plain_run():
  dataset = data.load_sample()
  plain = engine.setup(sample_config(), dataset)
  one = engine.setup(sample_config(sweep="seed=0:1"), dataset)
  _, plain_history = inputs.open_input(plain, dataset).train_epoch(plain.state, 0)
  _, one_history = inputs.open_input(one, dataset).train_epoch(one.state, 0)
  np.testing.assert_allclose(one_history["loss"][:, 0], plain_history["loss"], rtol=2e-5)


# ------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def swept(tmp_path_factory, cli):
  """The four-member sweep trained for two epochs, uninterrupted."""
  workdir = tmp_path_factory.mktemp("sweep")
  cli.run(workdir, *BASE, f"--config.sweep={GRID}", "--config.num_epochs=2")
  return workdir


def results(workdir) -> dict:
  return json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_the_sweep_writes_every_member_and_a_summary(swept, tmp_path, cli):
  r = results(swept)
  assert r["sweep"] == GRID and r["mesh"] == {"members": 1, "data": 1}
  assert [m["overrides"] for m in r["members"]] == [
      {"seed": s, "learning_rate": lr} for s in (0, 1) for lr in (1e-3, 3e-3)]
  assert [g["setting"] for g in r["summary"]] == [{"learning_rate": 1e-3},
                                                  {"learning_rate": 3e-3}]
  assert r["summary"][1]["metrics"]["test.mse"]["n"] == 2
  assert r["test"] == r["members"][0]["test"]  # the top level is member 0's
  assert (swept / "reconstructions.png").exists()
  # Member 3 against its own run, through the CLI.
  cli.run(tmp_path, *BASE, "--config.seed=1", "--config.learning_rate=3e-3",
          "--config.num_epochs=2")
  own = results(tmp_path)
  for key in ("mse", "bce", "sse_per_image"):
    np.testing.assert_allclose(r["members"][3]["test"][key], own["test"][key], rtol=1e-4)
  # analysis.load_run gives a member as a model of its own.
  member = analysis.load_run(swept, member=3)
  assert (member.config.seed, member.config.learning_rate, member.config.sweep) == (
      1, 3e-3, "")
  trained = analysis.load_run(tmp_path)
  for a, b in zip(jax.tree.leaves(member.variables), jax.tree.leaves(trained.variables)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_the_results_table_gives_each_setting_as_mean_and_std_over_its_seeds(swept, tmp_path):
  r = results(swept)
  table = results_table.rows(swept)
  assert len(table) == 2
  for row, group in zip(table, r["summary"]):
    mse = group["metrics"]["test.mse"]
    lr = group["setting"]["learning_rate"]
    assert row.startswith(f"| `{swept.name} learning_rate={lr:g} (2 seeds)` |")
    assert f"| {mse['mean']:.5f} ± {mse['std']:.5f} |" in row
  # A setting with one seed (a λ sweep) has no spread to give.
  one = {**r, "summary": [{**r["summary"][0], "members": [0]}]}
  (tmp_path / "results.json").write_text(json.dumps(one))
  [row] = results_table.rows(tmp_path)
  assert "(1 seed)" in row and "±" not in row


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_uninterrupted_result(swept, tmp_path, cli):
  marker = tmp_path / "paused"
  child = cli.start_child(tmp_path / "run", "after_checkpoint:1", marker, *BASE,
                          f"--config.sweep={GRID}", "--config.num_epochs=2")
  try:
    cli.wait_for(marker, child)
  finally:
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
  assert not (tmp_path / "run" / "results.json").exists()  # it was still training
  proc = cli.run(tmp_path / "run", *BASE, f"--config.sweep={GRID}", "--config.num_epochs=2")
  assert "Resumed from the checkpoint" in proc.stderr
  assert [m["test"] for m in results(tmp_path / "run")["members"]] == [
      m["test"] for m in results(swept)["members"]]
  # The sweep is part of the run's identity.
  other = cli.run(tmp_path / "run", *BASE, "--config.sweep=seed=0:3",
                  "--config.num_epochs=3", check=False)
  assert other.returncode == 1 and "sweep" in other.stderr.splitlines()[-1]


@pytest.mark.slow
def test_members_on_a_2d_mesh_equal_one_device_and_never_talk(swept, tmp_path):
  """4 members × 2 data devices: the same members as on one device, and the compiled
  epoch all-reduces only within a member's pair of devices."""
  code = textwrap.dedent(f"""
      import json, numpy as np
      from aejax import data, engine, sharding, trainer
      from experiments.configs import base, vanilla
      config = vanilla.get_config()
      config.dataset, config.batch_size, config.num_epochs = "mnist_sample", 500, 2
      config.sweep = "{GRID}"
      results = trainer.train_and_evaluate(config, "{tmp_path / 'run'}")
      print(json.dumps(results["mesh"]))
      run = engine.setup(config, data.DataSpec((28, 28, 1), 1000))
      images = sharding.put(run.mesh, np.zeros((1000, 28, 28, 1), np.uint8))
      order = run.program.start_epoch(run.state, run.keys.shuffle)
      print(run.program.run_chunk.lower(run.state, images, order, run.keys.noise,
                                        run.plan.chunk_steps).compile().as_text())
      """)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=600, env={**os.environ, "JAX_NUM_CPU_DEVICES": "8",
                                          "AEJAX_DATA_DIR": ""})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.splitlines()[0]) == {"members": 4, "data": 2}
  for a, b in zip(results(tmp_path / "run")["members"], results(swept)["members"]):
    np.testing.assert_allclose(a["test"]["mse"], b["test"]["mse"], rtol=1e-4)
  groups = re.findall(REPLICA_GROUPS, proc.stdout)
  assert groups, "the gradient is all-reduced over the data axis"
  assert all(within_members(group) for group in groups), groups
