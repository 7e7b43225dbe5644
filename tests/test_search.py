"""The search (aejax/tuner/): Optuna's trials on a sweep's slots, refilled in place
or trained as a population (PBT), through the command line and from Python, on the
bundled sample."""

import itertools
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import jax
import numpy as np
import optuna
import pytest

import aejax
from aejax import data as data_lib
from aejax.tuner import slots as tuner_slots, study as tuner_study
from aejax.tuner.space import SearchError

pytestmark = pytest.mark.slow

TINY = ("--config", "experiments/configs/vanilla.py",  # spelled apart, as users do
        "--config.dataset=mnist_sample",
        "--config.num_epochs=3", "--config.batch_size=250")
SPACE = "learning_rate=loguniform(1e-4,3e-2); weight_decay=loguniform(1e-6,1e-2)"


def _search(cli, workdir, *args, check=True, timeout=600):
  return cli.run_module("experiments.search", *TINY, f"--workdir={workdir}",
                        f"--space={SPACE}", "--rungs=1,2", *args, check=check,
                        timeout=timeout)


def _start(workdir, *args):
  cmd = [sys.executable, "-m", "experiments.search", *TINY, f"--workdir={workdir}",
         f"--space={SPACE}", "--rungs=1,2", *args]
  return subprocess.Popen(cmd, cwd=os.getcwd(), env={**os.environ, "AEJAX_DATA_DIR": ""},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def straight(cli, tmp_path_factory):
  """A search of 4 trials in 2 slots, run to its end: search.json."""
  workdir = tmp_path_factory.mktemp("search") / "straight"
  _search(cli, workdir, "--trials=4", "--slots=2", "--pruner=none")
  return json.loads((workdir / "search.json").read_text()), workdir


def test_search_through_the_cli(straight):
  result, workdir = straight
  trials = result["trials"]
  assert [t["state"] for t in trials] == ["complete"] * 4
  assert all(set(t["rungs"]) == {"1", "2", "3"} and t["value"] == t["rungs"]["3"]
             for t in trials)
  assert {t["slot"] for t in trials} == {0, 1}
  assert result["traces"] == {"epoch": 1, "fill": 1, "validate": 1, "copy": 0}  # once
  best = result["best"]
  assert best["value"] == min(t["value"] for t in trials)
  assert 0 < best["test"]["mse"] < 0.1
  assert best["command"].startswith("python -m experiments.main "
                                    "--config=experiments/configs/vanilla.py")
  assert "--config.dataset=mnist_sample" in best["command"]
  assert f"--config.learning_rate={best['params']['learning_rate']!r}" in best["command"]
  assert (workdir / "optimization_history.png").exists()


def test_sigterm_saves_and_the_rerun_resumes_bit_for_bit(cli, straight, tmp_path):
  workdir = tmp_path / "stopped"
  child = _start(workdir, "--trials=4", "--slots=2", "--pruner=none", "--noplots")
  for line in child.stderr:  # the signal handler is in place once trials start
    if "in slot 1" in line:
      break
  child.send_signal(signal.SIGTERM)
  child.communicate(timeout=300)
  assert child.returncode == 75
  first = json.loads((workdir / "search.json").read_text())
  assert "running" in [t["state"] for t in first["trials"]]
  _search(cli, workdir, "--trials=4", "--slots=2", "--pruner=none", "--noplots")
  resumed = json.loads((workdir / "search.json").read_text())
  # The trials running at the signal end exactly as in a search never stopped (the
  # ones asked after the resume may differ: a sampler's random state is not stored).
  values = lambda r: [(t["params"], t["rungs"]) for t in r["trials"][:len(first["trials"])]]
  assert values(resumed) == values(straight[0])
  assert [t["state"] for t in resumed["trials"]] == ["complete"] * 4


def test_a_killed_search_requeues_its_lost_trials_with_the_same_numbers(cli, straight,
                                                                      tmp_path):
  workdir = tmp_path / "killed"
  child = _start(workdir, "--trials=4", "--slots=2", "--pruner=none", "--noplots")
  for line in child.stderr:  # both slots hold a trial the study records as running
    if "in slot 1" in line:
      break
  child.kill()  # SIGKILL: nothing saved, the study left with two running trials
  child.communicate(timeout=60)
  assert child.returncode == -signal.SIGKILL
  _search(cli, workdir, "--trials=4", "--slots=2", "--pruner=none", "--noplots")
  trials = json.loads((workdir / "search.json").read_text())["trials"]
  lost = [t for t in trials if t.get("lost")]
  assert [(t["number"], t["state"]) for t in lost] == [(0, "fail"), (1, "fail")]
  reruns = {t["rerun_of"]: t for t in trials if "rerun_of" in t}
  assert sorted(reruns) == [0, 1]
  done = straight[0]["trials"]
  for t in lost:  # the same numbers, trained from their start: the same figures
    assert reruns[t["number"]]["params"] == t["params"] == done[t["number"]]["params"]
    assert reruns[t["number"]]["rungs"] == done[t["number"]]["rungs"]
  assert [t["state"] for t in trials if not t.get("lost")] == ["complete"] * 4


def _two_share(storage: str, tmp_path):
  """Two searches of 6 trials at once on ``storage``: one study holds the trials of
  both, each made in its own process's workdir (its own slots)."""
  children = [_start(tmp_path / f"w{i}", "--trials=6", "--slots=2", "--noplots",
                     f"--storage={storage}", f"--seed={i}") for i in range(2)]
  for child in children:
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-2000:]
  study = optuna.load_study(study_name="search", storage=tuner_study.open_storage(
      storage, tmp_path))
  trials = study.get_trials()
  assert 6 <= len(trials) <= 7  # each asks only while fewer than 6 exist
  assert {t.user_attrs["workdir"] for t in trials} == {str(tmp_path / "w0"),
                                                        str(tmp_path / "w1")}
  assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}


def test_two_processes_share_one_study(tmp_path):
  _two_share(str(tmp_path / "shared.journal"), tmp_path)


def _psycopg():
  """psycopg, or the test skipped: missing, or installed without libpq (the plain
  wheel finds none where the binary one is not installed)."""
  try:
    import psycopg  # noqa: PLC0415
  except ImportError as e:
    pytest.skip(f'no PostgreSQL driver ({e}): pip install "psycopg[binary]"')
  return psycopg


def _postgres_bin() -> pathlib.Path:
  """The folder of PostgreSQL's server programs: on PATH, or where Debian's packages
  put them (the newest version's), or the test skipped."""
  on_path = shutil.which("pg_ctl")
  found = [pathlib.Path(on_path)] if on_path else sorted(
      pathlib.Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
  if not found or not (found[-1].parent / "initdb").exists():
    pytest.skip("no PostgreSQL server (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")
  return found[-1].parent


def _server_user(folder: pathlib.Path) -> tuple[list[str], pathlib.Path]:
  """The command prefix that runs a program as the server's user, and a folder that
  user owns: ``folder``, ours. PostgreSQL refuses to run as root: a root process runs
  it as ``nobody``, in a folder of its own (pytest's are root's alone), which the
  caller removes."""
  if os.geteuid() != 0:
    return [], folder
  try:
    nobody = pwd.getpwnam("nobody")
  except KeyError:
    nobody = None
  if shutil.which("setpriv") is None or nobody is None:
    pytest.skip("PostgreSQL refuses to run as root, and this root process has no "
                "setpriv or no user 'nobody' to run it as")
  base = pathlib.Path(tempfile.mkdtemp(prefix="aejax-pg-"))
  os.chown(base, nobody.pw_uid, nobody.pw_gid)
  return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
          "--clear-groups", "--"], base


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
  """A throwaway PostgreSQL server on 127.0.0.1 at a free port, trust auth, no unix
  socket: a function that makes an empty database in it and gives its URL, through
  psycopg (SQLAlchemy's PostgreSQL driver). The server is stopped at the end, whatever
  the tests did."""
  psycopg = _psycopg()
  bin_dir = _postgres_bin()
  as_user, base = _server_user(tmp_path_factory.mktemp("postgres"))
  data = base / "data"
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

  def pg(program, *args):
    return subprocess.run([*as_user, str(bin_dir / program), *args], cwd=base,
                          capture_output=True, text=True, timeout=120)

  def new_database() -> str:
    name = f"search{next(made)}"
    with psycopg.connect(f"postgresql://aejax@127.0.0.1:{port}/postgres",
                         autocommit=True) as connection:
      connection.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://aejax@127.0.0.1:{port}/{name}"

  made = itertools.count()
  try:
    done = pg("initdb", "-D", str(data), "-U", "aejax", "--auth=trust", "-E", "UTF8",
              "--no-sync")
    if done.returncode != 0:
      pytest.skip(f"initdb failed: {done.stderr.strip()[-500:]}")
    done = pg("pg_ctl", "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60",
              "-o", f"-c listen_addresses=127.0.0.1 -p {port} "
              "-c unix_socket_directories='' -c fsync=off", "start")
    if done.returncode != 0:
      log = (base / "log").read_text() if (base / "log").exists() else done.stderr
      pytest.skip(f"the PostgreSQL server did not start: {log.strip()[-500:]}")
    yield new_database
  finally:
    pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
    if as_user:
      shutil.rmtree(base, ignore_errors=True)


def test_two_processes_share_one_study_in_postgresql(postgres, tmp_path):
  _two_share(postgres(), tmp_path)


def test_processes_opening_a_new_database_at_once_all_open_it(postgres, tmp_path):
  """The first to open a new database makes Optuna's tables; four at once race to
  (PostgreSQL refuses all but one, a duplicate key) and all must open it."""
  url = postgres()
  start = threading.Barrier(4)
  failed = []

  def open_it():
    start.wait()
    try:
      tuner_study.open_storage(url, tmp_path)
    except SearchError as e:
      failed.append(str(e))

  openers = [threading.Thread(target=open_it) for _ in range(4)]
  for opener in openers:
    opener.start()
  for opener in openers:
    opener.join()
  assert not failed, failed


def test_a_database_that_does_not_answer_is_refused(monkeypatch, tmp_path):
  """A port that takes the connection and never answers (a firewall's silence is the
  same): the search is refused on the driver's connect timeout (shortened here), where
  without one it would wait for ever."""
  _psycopg()
  monkeypatch.setattr(tuner_study, "CONNECT_TIMEOUT_S", 2)
  refused = []

  def open_it(url):
    try:
      tuner_study.open_storage(url, tmp_path)
    except SearchError as e:
      refused.append(str(e))

  with socket.socket() as silent:
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = f"postgresql://aejax@127.0.0.1:{silent.getsockname()[1]}/search"
    opener = threading.Thread(target=open_it, args=(url,), daemon=True)
    opener.start()
    opener.join(timeout=60)
    assert not opener.is_alive(), "open_storage still waits for a silent database"
  assert len(refused) == 1 and refused[0].startswith(
      f"--storage={url}: cannot open the study's storage"), refused


def test_results_table_prints_a_search_best_first(straight, tmp_path, capsys):
  from experiments import results_table
  result, workdir = straight
  results_table.main([str(workdir)])
  out = capsys.readouterr().out.splitlines()
  rows = [l for l in out if l.startswith("| `straight`")]
  best = result["best"]
  assert len(rows) == 4 and rows[0].startswith(f"| `straight` | {best['number']} ★ | complete |")
  assert f"| 3 | {best['value']:.6f} | {best['test']['mse']:.5f} |" in rows[0]
  assert f"learning_rate={best['params']['learning_rate']:.4g}" in rows[0]
  assert any(best["command"] in l for l in out)
  # Pruned, failed and lost trials come after those with a figure, by number.
  other = {**result, "best": None, "trials": [
      {"number": 0, "state": "fail", "params": {"learning_rate": 0.1}, "rungs": {},
       "value": None, "lost": True},
      {"number": 1, "state": "pruned", "params": {"learning_rate": 0.2}, "rungs": {"1": 0.5},
       "value": None},
      {"number": 2, "state": "complete", "params": {"learning_rate": 0.3},
       "rungs": {"1": 0.2, "3": 0.1}, "value": 0.1}]}
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "search.json").write_text(json.dumps(other))
  assert [r.split(" | ")[1:5] for r in results_table.search_rows(tmp_path / "other")] == [
      ["2", "complete", "learning_rate=0.3", "3"], ["0", "fail (lost)", "learning_rate=0.1", "0"],
      ["1", "pruned", "learning_rate=0.2", "1"]]


def _held(**overrides):
  config = aejax.get_config("vanilla", dataset="mnist_sample", num_epochs=2,
                            batch_size=250, **overrides)
  return config, tuner_slots.split_validation(data_lib.load(config), 1 / 6)


def test_a_refilled_slot_leaves_the_others_bit_for_bit():
  config, held = _held()
  pool = tuner_slots.Slots(config, held, 2, ["learning_rate"])
  steps = held.n_train // config.batch_size

  def run(first, then=None, epochs=2):
    pool.fill(0, {"learning_rate": first})
    pool.fill(1, {"learning_rate": 3e-3})
    pool.train_epoch()
    if then is not None:
      pool.fill(0, {"learning_rate": then})  # pruned: the next trial takes its slot
    for _ in range(epochs - 1):
      pool.train_epoch()
    return pool.variables(0), pool.variables(1), pool.steps()

  refilled0, refilled1, refilled_steps = run(1e-3, then=1e-2)
  _, alone1, _ = run(1e-3)
  fresh0, _, _ = run(1e-2, epochs=1)
  assert refilled_steps.tolist() == [steps, 2 * steps]  # each slot its own step
  for a, b in zip(jax.tree.leaves(refilled1), jax.tree.leaves(alone1)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(refilled0), jax.tree.leaves(fresh0)):
    np.testing.assert_array_equal(a, b)
  assert pool.traces == {"epoch": 1, "fill": 1, "validate": 0, "copy": 0}  # compiled once


def test_a_copied_slot_goes_on_from_its_source_and_nothing_compiles_again():
  config, held = _held()
  pool = tuner_slots.Slots(config, held, 3, ["learning_rate"])
  for slot, lr in enumerate((1e-3, 3e-3, 1e-2)):
    pool.fill(slot, {"learning_rate": lr})
  pool.train_epoch()
  source = jax.tree.map(np.asarray, pool.state)
  pool.copy(2, 0, {"learning_rate": 2e-3})  # slot 2 exploits slot 0, explores its rate
  copied = jax.tree.map(np.asarray, pool.state)
  for a, b in zip(jax.tree.leaves(copied), jax.tree.leaves(source)):
    np.testing.assert_array_equal(a[2], b[0])  # parameters, optimizer state and step
    np.testing.assert_array_equal(a[:2], b[:2])  # the others untouched
  np.testing.assert_array_equal(pool.numbers["learning_rate"],
                                np.float32([1e-3, 3e-3, 2e-3]))
  pool.copy(0, 1, {"learning_rate": 4e-3})
  pool.train_epoch()
  assert pool.traces == {"epoch": 1, "fill": 1, "validate": 0, "copy": 1}


def test_population_based_training_through_the_cli(cli, tmp_path):
  workdir = tmp_path / "pbt"
  _search(cli, workdir, "--strategy=pbt", "--trials=4", "--slots=4", "--noplots")
  result = json.loads((workdir / "search.json").read_text())
  assert result["traces"] == {"epoch": 1, "fill": 1, "validate": 1, "copy": 1}
  lineage, trials = result["lineage"], {t["number"]: t for t in result["trials"]}
  copies = [c for slot in lineage for c in slot]
  assert sorted(c["epoch"] for c in copies) == [1, 2]  # the worst of 4 slots at each rung
  for c in copies:  # each copy is a trial of its own, its parent's numbers explored
    assert trials[c["trial"]]["copied_from"] == c["from_trial"]
    assert trials[c["trial"]]["params"] == c["params"]
    assert trials[c["from_trial"]]["slot"] == c["from_slot"]
  states = [t["state"] for t in result["trials"]]
  assert states.count("complete") == 4 and states.count("pruned") == 2
  assert result["best"]["test"]["mse"] > 0


def test_a_nan_trial_fails_and_the_search_goes_on(tmp_path):
  config, _ = _held()
  result = aejax.search(config, tmp_path / "nan", space="learning_rate=choice(1e30,1e-3)",
                        trials=4, slots=2, sampler="random", pruner="none", plots=False)
  states = {t["params"]["learning_rate"]: t["state"] for t in result["trials"]}
  assert states == {1e30: "fail", 1e-3: "complete"}
  failed = [t for t in result["trials"] if t["state"] == "fail"]
  assert all("NaN" in t["failed"] for t in failed)


@pytest.mark.parametrize("space, message", [
    ("learning_rat=uniform(0,1)", r"--space cannot vary 'learning_rat'"),
    ("model.code_size=int(2,8)", r"--space cannot vary 'model.code_size'.*structure"),
    ("learning_rate=loguniform(0.1)", r"learning_rate=loguniform\(0.1\): give two bounds"),
    ("learning_rate=normal(0,1)", r"is not key=distribution"),
    ("losses.kl=uniform(0,1)", r"a term config.losses does not name"),
])
def test_a_bad_space_is_refused(tmp_path, space, message):
  config, _ = _held()
  with pytest.raises(SearchError, match=message):
    aejax.search(config, tmp_path / "w", space=space, trials=2, slots=2)


def test_bad_searches_are_refused(tmp_path):
  config, _ = _held()
  kwargs = dict(space="learning_rate=uniform(1e-4,1e-2)", trials=2)
  with pytest.raises(SearchError, match=r"--slots=100000000 is too many.*fit"):
    aejax.search(config, tmp_path / "w", slots=100_000_000, **kwargs)
  with pytest.raises(SearchError, match=r"--storage=postgresql://.*cannot open"):
    aejax.search(config, tmp_path / "w", slots=2,
                 storage="postgresql://nobody@127.0.0.1:1/none", **kwargs)
  with pytest.raises(SearchError, match=r"--strategy=pbt .* --slots ≥ 2 \(not 1\)"):
    aejax.search(config, tmp_path / "w", slots=1, strategy="pbt", **kwargs)
  with pytest.raises(SearchError, match=r"--rungs=2 has none below"):
    aejax.search(config, tmp_path / "w", slots=2, strategy="pbt", rungs="2", **kwargs)
  storage = f"sqlite:///{tmp_path / 'study.db'}"
  aejax.search(config, tmp_path / "a", slots=2, storage=storage, plots=False, **kwargs)
  with pytest.raises(SearchError, match=r"made with another space"):
    aejax.search(config, tmp_path / "b", slots=2, storage=storage, trials=2,
                 space="learning_rate=uniform(1e-4,1e-1)")


def test_a_bad_search_is_one_line(cli, tmp_path):
  proc = _search(cli, tmp_path / "w", "--trials=2", "--objective=psnr", check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --objective='psnr'")
  assert "Traceback" not in proc.stderr
