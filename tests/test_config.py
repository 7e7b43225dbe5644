"""Every config key declared once (aejax/config.py): the experiment files override only
declared keys, every optimizer key works on every config, and older saved configs are
upgraded so that their workdirs still resume."""

import importlib
import json
import pathlib
import tomllib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from aejax import config as config_lib, optimizer as optimizer_lib, trainer
from experiments import evaluate_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")
                 if p.stem not in ("__init__", "base"))


def flat_keys(tree: dict, prefix: str = "") -> set[str]:
  keys = set()
  for key, value in tree.items():
    keys |= flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
  return keys


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_overrides_only_declared_keys(name):
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  declared = config_lib.json_dict(config_lib.defaults(config.model.name))
  assert flat_keys(config_lib.json_dict(config)) == flat_keys(declared)
  config_lib.validate(config)


def test_no_library_code_repeats_a_default():
  """A default lives in aejax/config.py only: nothing reads a key with a fallback."""
  offenders = [str(p.relative_to(ROOT)) for folder in ("aejax", "experiments")
               for p in (ROOT / folder).rglob("*.py") if "config.get(" in p.read_text()]
  assert offenders == []


def test_weight_decay_is_adamw_on_any_config():
  config = importlib.import_module("experiments.configs.vanilla").get_config()
  config.weight_decay = 0.1
  config_lib.validate(config)
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.full(3, 0.5)}
  ours = optimizer_lib.make_optimizer(config, steps_per_epoch=10)
  reference = optax.adamw(optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, optimizer_lib.warmup_steps(config, 10), 50,
      config.learning_rate * config.final_lr_fraction), weight_decay=0.1)
  state, ref_state = ours.init(params), reference.init(params)
  for _ in range(3):
    update, state = ours.update(grads, state, params)
    ref_update, ref_state = reference.update(grads, ref_state, params)
    np.testing.assert_array_equal(update["w"], ref_update["w"])
  config.weight_decay = -1.0
  with pytest.raises(ValueError, match="config.weight_decay must be a finite number"):
    config_lib.validate(config)


def test_upgrade_gives_an_older_config_what_it_ran_with():
  now = config_lib.json_dict(config_lib.defaults())
  older = {k: v for k, v in now.items()
           if k not in ("weight_decay", "input", "checkpoint_every", "microbatch_size")}
  older["model"] = {k: v for k, v in now["model"].items() if k != "compute_dtype"}
  upgraded = config_lib.upgrade(older)
  assert upgraded["weight_decay"] == 0.0 and upgraded["checkpoint_every"] == 1
  assert upgraded["microbatch_size"] == 0 and upgraded["model"]["compute_dtype"] == "float32"
  assert upgraded["input"] == "device"  # runs from before the key trained on the device
  assert config_lib.upgrade(now) == now
  # A key the saved config has and today's does not is kept, so a resume names it.
  assert config_lib.upgrade({**now, "retired": 1})["retired"] == 1


def sample_config(num_epochs: int) -> ml_collections.ConfigDict:
  config = importlib.import_module("experiments.configs.vanilla").get_config()
  config.dataset, config.num_epochs, config.batch_size = "mnist_sample", num_epochs, 500
  config.schedule = "constant"  # so that one epoch then another is a two-epoch run
  return config


def test_a_workdir_saved_before_keys_existed_resumes_to_the_same_result(tmp_path):
  """A run whose config.json and checkpoint hold a config without today's newer keys
  (as an older aejax wrote them) resumes, and ends where an uninterrupted run does."""
  trainer.train_and_evaluate(sample_config(1), str(tmp_path / "old"))
  dropped = ("weight_decay", "input", "checkpoint_every", "sweep")
  metas = list((tmp_path / "old" / "checkpoints").glob("*/meta/metadata"))
  assert metas
  for path in metas:
    meta = json.loads(path.read_text())
    for config in (meta["config"], meta["original_config"]):
      for key in dropped:
        del config[key]
    path.write_text(json.dumps(meta))
  saved = json.loads((tmp_path / "old" / "config.json").read_text())
  (tmp_path / "old" / "config.json").write_text(
      json.dumps({k: v for k, v in saved.items() if k not in dropped}))

  # Evaluating the older run reads its config as it ran.
  old = evaluate_run.evaluate(str(tmp_path / "old"))
  assert old["epoch"] == 1 and "members" not in old
  resumed = trainer.train_and_evaluate(sample_config(2), str(tmp_path / "old"))
  straight = trainer.train_and_evaluate(sample_config(2), str(tmp_path / "new"))
  # The older run trained on the device before config.input existed: that layout key
  # is recorded as changed to today's 'auto' (which picks the device here).
  assert resumed["segments"][-1] == {
      "first_epoch": 2, "changes": {"input": ["device", "auto"], "num_epochs": [1, 2]},
      "schedule": straight["segments"][0]["schedule"]}
  assert resumed["test"] == straight["test"]
  assert jax.tree.leaves(resumed["test"])  # compared something


def test_weight_decay_trains_on_the_vanilla_config_through_the_cli(tmp_path, cli):
  cli.run_config("vanilla", tmp_path, "--config.weight_decay=0.1")
  results = json.loads((tmp_path / "results.json").read_text())
  assert json.loads((tmp_path / "config.json").read_text())["weight_decay"] == 0.1
  assert 0 < results["test"]["mse"] < 0.1


def test_every_config_key_records_its_history():
  """A key added to ``defaults`` without its line in ``config.HISTORY`` (the version
  that brought it, and what older runs did where that is not its default) fails here:
  ``upgrade`` would otherwise resume an older run with the new default, silently."""
  declared = set(config_lib.keys(config_lib.defaults()))
  missing = sorted(declared - set(config_lib.HISTORY))
  assert not missing, f"config keys without a line in aejax/config.py's HISTORY: {missing}"
  assert not sorted(set(config_lib.HISTORY) - declared), "HISTORY names keys that are gone"
  pyproject = tomllib.loads((pathlib.Path(__file__).resolve().parents[1]
                             / "pyproject.toml").read_text())
  version = tuple(map(int, pyproject["project"]["version"].split(".")))
  for key, since in config_lib.HISTORY.items():
    assert tuple(map(int, since.version.split("."))) <= version, (key, since.version)
  old = config_lib.json_dict(config_lib.defaults())
  del old["input"], old["corruption"]["level"]
  upgraded = config_lib.upgrade(old)
  assert upgraded["input"] == "device" and upgraded["corruption"]["level"] == 0.0


def test_main_help_lists_the_continue_keys(cli):
  proc = cli.run_module("experiments.main", "--helpfull", check=False)
  text = proc.stdout + proc.stderr
  assert "continue_with_changes" in text
  for key in config_lib.CONTINUE_KEYS:
    assert key in text
