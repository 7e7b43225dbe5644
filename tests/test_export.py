"""A trained model out of aejax (aejax/export.py, docs/export.md): every exporting
family's ONNX files (run by onnxruntime) and jax.export artifacts reproduce aejax's
encode, decode and reconstruction at batch sizes 1, 7 and the sample's whole test
set; the model folder opens without the workdir and encodes bit for bit; a family that
is not exported is refused in one line; the command line end to end.

Each family trains once (module fixture, in memory: 640 of the sample's training
images, its 1,000 test images) with small sizes.
"""

import dataclasses
import shutil

import numpy as np
import onnxruntime as ort
import pytest

import aejax
from aejax import data as data_lib, export, models

TOLERANCE = 1e-5  # |exported - aejax| <= TOLERANCE * max(1, |aejax|), float32

# A config of each exporting family, small.
CONFIGS = {
    "mlp": ("vanilla", {"model.code_size": 16}),
    "conv": ("conv", {"model.features": (8, 8)}),
    "topk": ("topk", {"model.width": 64, "model.k": 8, "model.k_aux": 16}),
    "contractive": ("contractive", {"model.code_size": 16}),
    "vae": ("vae", {"model.hidden": (32,), "model.latent_size": 8,
                    "model.eval_nll_samples": 2}),
    "vqvae": ("vqvae", {"model.features": (8, 8), "model.num_embeddings": 16}),
    "factorized_prior": ("codec", {"model.features": (8, 8), "model.latent_channels": 4}),
    "hyperprior": ("codec:hyperprior", {"model.features": (8, 8),
                                        "model.latent_channels": 4,
                                        "model.hyper_features": 8,
                                        "model.hyper_channels": 2}),
}


@pytest.fixture(scope="module")
def sample():
  ds = data_lib.load_sample()
  return {"train": ds.train_images[:640], "test": ds.test_images,
          "train_labels": ds.train_labels[:640], "test_labels": ds.test_labels}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample):
  """Each family trained once, lazily: ``runs(name) -> Trained``."""
  trained = {}

  def get(name):
    if name not in trained:
      config, overrides = CONFIGS[name]
      config = aejax.get_config(config, num_epochs=1, **overrides)
      trained[name] = aejax.train(config, tmp_path_factory.mktemp(name) / "run", data=sample)
    return trained[name]

  return get


def _max_error(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape
  return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


def _onnx(path):
  session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
  (inp,), (out,) = session.get_inputs(), session.get_outputs()
  assert inp.shape[0] == out.shape[0] == "N"  # the batch dimension is symbolic
  return lambda x: session.run(None, {inp.name: np.asarray(x, np.float32)})[0]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnx_and_jax_export_reproduce_aejax_at_batch_1_7_and_the_test_set(
    name, runs, sample, tmp_path):
  trained = runs(name)
  report = trained.export(tmp_path, formats=("onnx", "jax"), images=sample["test"])
  spec = models.get(trained.config.model.name).export
  x = sample["test"].astype(np.float32) / 255
  codes = trained.encode(x)
  wanted = {"decoder": (codes, trained.decode(codes))}
  if spec.encoder == "encode":
    wanted["encoder"] = (x, codes)
  else:  # the codec: its analysis transform, y before rounding; round(y) is the code
    run = trained._run
    latents = run.batched(models.compiled_apply(run.model, "analysis"), x)
    np.testing.assert_array_equal(np.round(latents), codes)
    wanted["encoder"] = (x, latents)
  if spec.autoencoder:
    wanted["autoencoder"] = (x, trained.reconstruct(x))
  assert sorted(report["files"]) == sorted(
      f"{n}.{ext}" for n in wanted for ext in ("onnx", "jax_exported"))
  for what, (inputs, want) in wanted.items():
    for run_file in (_onnx(tmp_path / f"{what}.onnx"),
                     export.load_jax(tmp_path / f"{what}.jax_exported")):
      for n in (1, 7, len(x)):
        assert _max_error(run_file(inputs[:n]), want[:n]) <= TOLERANCE, (what, n)
  assert max(report["max_error"].values()) <= TOLERANCE


def test_a_family_that_is_not_exported_is_refused_in_one_line(runs, tmp_path,
                                                              monkeypatch):
  trained = runs("mlp")
  family = models.get("mlp")
  reason = "its decoder is a lookup table no converter takes."
  monkeypatch.setitem(models.registry._FAMILIES, "mlp",
                      dataclasses.replace(family, export=models.Export(refused=reason)))
  with pytest.raises(export.ExportError) as refused:
    trained.export(tmp_path / "out")
  assert str(refused.value) == f"model 'mlp' is not exported: {reason}"
  assert not (tmp_path / "out").exists()  # refused before anything is written
  monkeypatch.setitem(models.registry._FAMILIES, "mlp", dataclasses.replace(
      family, export=models.Export(encoder="encode_to_bytes")))
  with pytest.raises(aejax.ConfigError, match="^model 'mlp' is not exported: its module "
                     "has no encode_to_bytes method to export.$"):
    trained.export(tmp_path / "out")


def test_the_command_exports_checks_and_the_folder_encodes_bit_for_bit_without_the_workdir(
    cli, tmp_path, sample):
  workdir, out = tmp_path / "run", tmp_path / "exported"
  cli.run_config("topk", workdir, "--config.model.width=64", "--config.model.k=8",
                 "--config.model.k_aux=16")
  before = aejax.load(workdir)
  x = sample["test"]
  codes, decoded = before.encode(x), before.decode(before.encode(x))
  metrics = before.results["test"]
  proc = cli.run_module("experiments.export", f"--workdir={workdir}", f"--out={out}")
  for name in ("encoder", "decoder", "autoencoder"):
    assert f"{name}.onnx" in proc.stdout and f"{name}.jax_exported" in proc.stdout
  assert "the run's test set (1000 examples" in proc.stdout
  errors = [float(line.split()[-1]) for line in proc.stdout.splitlines() if "max error" in line]
  assert len(errors) == 6 and max(errors) <= TOLERANCE
  shutil.rmtree(workdir)

  folder = aejax.load(out)  # no workdir, no checkpoints, no data
  np.testing.assert_array_equal(folder.encode(x), codes)
  np.testing.assert_array_equal(folder.decode(codes), decoded)
  assert folder.results["test"] == metrics
  assert folder.image_shape == (28, 28, 1) and folder.code_shape == (64,)
  card = (out / "README.md").read_text()
  assert before.data["fingerprint"] in card and "topk" in card
  assert "--config.model.width=64" in card

  # A user's mistakes: one error line, status 1.
  for args, message in (((f"--workdir={workdir}", f"--out={out}"), "does not exist"),
                        ((f"--workdir={out}", f"--out={out}", "--format=onnx,tflite"),
                         "tflite")):
    proc = cli.run_module("experiments.export", *args, check=False)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr


def test_topk_masked_code_is_the_scattered_one_ties_included():
  from aejax.models import topk  # noqa: PLC0415
  rng = np.random.default_rng(0)
  pre = rng.integers(-3, 4, (64, 40)).astype(np.float32)  # many ties at the k-th value
  for k in (1, 5, 40):
    np.testing.assert_array_equal(topk.top_k_masked(pre, k), topk.top_k_code(pre, k))
