"""A trained model out of aejax: ONNX files, ``jax.export`` artifacts and a portable
model folder in the Hugging Face hub's layout.

    trained = aejax.load("runs/conv")
    report = trained.export("exported/conv")      # formats=("onnx", "jax", "folder")
    aejax.load("exported/conv").encode(x)         # the folder: no workdir, no data

    python -m experiments.export --workdir runs/conv --out exported/conv

What a family exports is its registry entry's ``export`` (``models.Export``): the
encoder (``encode``: images ``[N, H, W, C]`` float32 in [0, 1], or vectors ``[N, D]``
in their own units, to codes ``[N, *code_shape]``), the decoder (codes to images) and
the autoencoder (images to reconstructions), each with a symbolic batch size. A
family that cannot be exported is refused with an ``ExportError`` of one line.

Every file written is checked against aejax's own outputs (``Trained``'s compiled
functions) at batch sizes 1, 7 and the whole of the check set (the run's test set),
by onnxruntime for ``.onnx`` and by ``jax.export.deserialize`` for
``.jax_exported``: ``|exported − aejax| ≤ TOLERANCE · max(1, |aejax|)`` everywhere,
else ``ExportError``. The report gives each file's largest error.

jax2onnx, onnx, onnxruntime and safetensors are the optional extra ``aejax[export]``,
imported here only when used.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import pathlib
from typing import TYPE_CHECKING, Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from aejax import config as config_lib, model_card, models
from aejax.images import is_pixels, to_float

if TYPE_CHECKING:
  from aejax.trained import Trained

FORMATS = ("onnx", "jax", "folder")
# float32 through another runtime: the same operations, in another order (ONNX's
# convolutions and matmuls accumulate differently), measured at ~1e-6 on MNIST.
TOLERANCE = 1e-5
CHECK_BATCHES = (1, 7)  # and the whole check set
FOLDER_FORMAT = "aejax-model-folder/1"
WEIGHTS = "model.safetensors"
_EXTRA = 'pip install "aejax[export]"'


class ExportError(config_lib.ConfigError):
  """A model that cannot be exported (its family, a missing package) or an artifact
  that does not reproduce aejax's outputs; the message is one line."""


def _require(module: str):
  """``importlib.import_module(module)``, or ExportError naming the extra."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise ExportError(f"exporting needs {module.split('.')[0]}, which is not installed: "
                      f"{_EXTRA}.") from None


# ------------------------------------------------------------ what is exported


def functions(trained: Trained) -> dict[str, tuple[Callable, tuple[int, ...], str, str]]:
  """``{"encoder" | "decoder" | "autoencoder": (fn, per-example input shape, input
  name, output name)}``: pure float32 functions of one array, the parameters closed
  over, a vector run's standardisation applied inside."""
  run, spec = trained._run, refusal_check(trained)
  model, variables = run.model, jax.tree.map(jnp.asarray, run.variables)
  apply = lambda method, x: model.apply(variables, x, method=spec.traced.get(method, method))
  mean, std = ((None, None) if trained._scale is None
               else (jnp.asarray(s, jnp.float32) for s in trained._scale))

  def scale_in(x):
    return x if mean is None else (x - mean) / std

  def scale_out(x):
    return x if mean is None else x * std + mean

  encoder = lambda x: apply(spec.encoder, scale_in(x))
  decoder = lambda code: scale_out(apply(spec.decoder, code))
  fns = {"encoder": (encoder, trained.image_shape, "images",
                         "codes" if spec.encoder == "encode" else "latents"),
         "decoder": (decoder, trained.code_shape, "codes", "images")}
  if spec.autoencoder:
    fns["autoencoder"] = (lambda x: decoder(apply("encode", scale_in(x))),
                          trained.image_shape, "images", "reconstruction")
  return fns


def refusal_check(trained: Trained) -> models.Export:
  """The family's ``Export``; ExportError, one line, for one that is refused."""
  family = models.get(trained.config.model.name)
  spec = family.export
  if spec.refused:
    raise ExportError(f"model {family.name!r} is not exported: {spec.refused}")
  missing = [m for m in (spec.encoder, spec.decoder) if not hasattr(trained._run.model, m)]
  if missing:
    raise ExportError(f"model {family.name!r} is not exported: its module has no "
                      f"{' or '.join(missing)} method to export.")
  return spec


def references(trained: Trained) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
  """aejax's own output of each exported function, NumPy in and out: the compiled
  functions ``Trained.encode``/``decode``/``reconstruct`` use."""
  run, spec = trained._run, refusal_check(trained)
  encode = models.compiled_apply(run.model, spec.encoder)
  refs = {"encoder": lambda x: run.batched(encode, trained._inputs(x)),
          "decoder": trained.decode, "autoencoder": trained.reconstruct}
  if spec.encoder == "encode":
    refs["encoder"] = trained.encode
  return refs


# ------------------------------------------------------------------- writers


@contextlib.contextmanager
def _quiet_onnx_ir():
  """jax2onnx's IR logs a warning per untyped shape constant; they are not errors."""
  logger = logging.getLogger("onnx_ir")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def write_onnx(fns: dict, out: pathlib.Path) -> list[pathlib.Path]:
  """``<name>.onnx`` of each function, batch dimension ``N`` (opset 21)."""
  jax2onnx, onnx = _require("jax2onnx"), _require("onnx")
  paths = []
  for name, (fn, shape, input_name, output_name) in fns.items():
    with _quiet_onnx_ir():
      try:
        proto = jax2onnx.to_onnx(fn, [("N", *shape)], model_name=f"aejax_{name}", opset=21,
                                 input_names=[input_name], output_names=[output_name])
      except Exception as e:  # noqa: BLE001 - the converter's refusals have no one type
        raise ExportError(f"jax2onnx cannot convert the {name}: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                          ) from None
    for value in (*proto.graph.input, *proto.graph.output):  # one name for the batch
      value.type.tensor_type.shape.dim[0].dim_param = "N"
    path = out / f"{name}.onnx"
    onnx.save_model(proto, str(path))
    paths.append(path)
  return paths


def write_jax(fns: dict, out: pathlib.Path) -> list[pathlib.Path]:
  """``<name>.jax_exported``: ``jax.export``'s serialized StableHLO of each function,
  batch dimension symbolic, lowered for CPU, CUDA and TPU."""
  paths = []
  for name, (fn, shape, _, _) in fns.items():
    dims = jax.export.symbolic_shape(", ".join(["n", *map(str, shape)]))
    arg = jax.ShapeDtypeStruct(dims, jnp.float32)
    exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda", "tpu"))(arg)
    path = out / f"{name}.jax_exported"
    path.write_bytes(exported.serialize())
    paths.append(path)
  return paths


def load_jax(path: str | pathlib.Path) -> Callable[[Any], jax.Array]:
  """A ``.jax_exported`` file as a function of one array (any batch size). JAX reads
  such files only within its compatibility window (what JAX releases of the last six
  months wrote: jax.export's documentation)."""
  exported = jax.export.deserialize(bytearray(pathlib.Path(path).read_bytes()))
  return exported.call


# --------------------------------------------------------------------- checks


def check_set(trained: Trained, images: np.ndarray | None = None) -> tuple[np.ndarray, str]:
  """``(float32 examples in the model's units, what they are)``: ``images``, else the
  run's test set, else (data not at hand) 1,000 random ones."""
  if images is None:
    from aejax.data import DataError, sources  # noqa: PLC0415 - the readers, only here
    try:
      return _float(trained, sources.load(trained.config).test_images), "the run's test set"
    except (DataError, FileNotFoundError, ValueError):
      rng = np.random.default_rng(0)
      x = rng.random((1000, *trained.image_shape), np.float32)
      if trained._scale is not None:
        mean, std = trained._scale
        x = (rng.standard_normal(x.shape) * std + mean).astype(np.float32)
      return x, "1,000 random inputs (the run's data is not at hand)"
  return _float(trained, images), "the given images"


def _float(trained: Trained, x) -> np.ndarray:
  x = np.asarray(x)
  return (to_float(x) if is_pixels(x) and len(trained.image_shape) == 3
          else x.astype(np.float32))


def max_error(got: np.ndarray, want: np.ndarray) -> float:
  """``max |got − want| / max(1, |want|)``: the figure TOLERANCE bounds."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  if got.shape != want.shape:
    return float("inf")
  return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)), initial=0.0))


def verify(trained: Trained, paths: list[pathlib.Path], x: np.ndarray) -> dict[str, float]:
  """Each artifact at batch sizes 1, 7 and ``len(x)`` against aejax: ``{file name:
  largest error}``; ExportError naming the file above TOLERANCE."""
  refs = references(trained)
  inputs = {"encoder": x, "autoencoder": x, "decoder": trained.encode(x)}
  errors = {}
  for path in paths:
    name = path.stem
    run = _runner(path)
    wanted = refs[name](inputs[name])
    error = max(max_error(run(inputs[name][:n]), wanted[:n])
                for n in (*CHECK_BATCHES, len(x)))
    if not error <= TOLERANCE:
      raise ExportError(f"{path.name} differs from aejax's {name} by {error:.3g} "
                        f"(tolerance {TOLERANCE:g}).")
    errors[path.name] = error
  return errors


def _runner(path: pathlib.Path) -> Callable[[np.ndarray], np.ndarray]:
  if path.suffix == ".onnx":
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]
  call = load_jax(path)
  return lambda x: np.asarray(call(jnp.asarray(x, jnp.float32)))


def onnx_session(path: str | pathlib.Path, threads: int = 0):
  """An onnxruntime session of ``path`` on its CPU provider (``threads``: its intra-op
  threads, 0 its default)."""
  ort = _require("onnxruntime")
  options = ort.SessionOptions()
  options.intra_op_num_threads = threads
  return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------- the model folder


def write_folder(trained: Trained, out: pathlib.Path) -> list[pathlib.Path]:
  """``config.json``, ``model.safetensors`` and ``README.md`` (the hub's layout); what
  the first and last say about the model is ``model_card``'s."""
  from flax import traverse_util  # noqa: PLC0415
  safetensors_numpy = _require("safetensors.numpy")
  run = trained._run
  flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, run.variables), sep="/")
  safetensors_numpy.save_file({k: np.ascontiguousarray(v) for k, v in flat.items()},
                              str(out / WEIGHTS), metadata={"format": "np"})
  config = model_card.own_config(trained)
  record = {"format": FOLDER_FORMAT, "aejax_version": model_card.aejax_version(),
            "step": int(run.step), "family": config["model"]["name"],
            "input": model_card.input_spec(trained),
            "code_shape": list(trained.code_shape), "data": trained.data,
            "results": trained.results, "command": model_card.command(trained),
            "config": config}
  (out / "config.json").write_text(json.dumps(record, indent=2, default=model_card.jsonable)
                                   + "\n")
  (out / "README.md").write_text(model_card.readme(trained, record))
  return [out / "config.json", out / WEIGHTS, out / "README.md"]


def is_folder(path: str | pathlib.Path) -> bool:
  """``path`` is a model folder ``write_folder`` wrote (not a workdir)."""
  path = pathlib.Path(path)
  return (path / WEIGHTS).is_file() and (path / "config.json").is_file()


def read_folder(path: str | pathlib.Path) -> dict:
  """What ``Trained.__setstate__`` takes, from a folder ``write_folder`` wrote
  (``aejax.load`` of the folder makes the ``Trained``); WorkdirError for a
  ``config.json`` of something else."""
  from flax import traverse_util  # noqa: PLC0415
  from aejax.workdir import WorkdirError  # noqa: PLC0415
  path = pathlib.Path(path)
  record = json.loads((path / "config.json").read_text())
  if record.get("format") != FOLDER_FORMAT:
    raise WorkdirError(f"{path / 'config.json'} is not an aejax model folder's "
                       f"(format {record.get('format')!r}, expected {FOLDER_FORMAT!r}).")
  safetensors_numpy = _require("safetensors.numpy")
  variables = traverse_util.unflatten_dict(safetensors_numpy.load_file(str(path / WEIGHTS)),
                                           sep="/")
  return {"workdir": str(path), "member": None, "results": record["results"],
          "history": [], "step": record["step"], "variables": variables,
          "meta": {"config": record["config"], "data": record["data"]}}


# ----------------------------------------------------------------- the export


def check_formats(formats) -> tuple[str, ...]:
  """``formats`` as a tuple; ExportError for none, or one not in FORMATS."""
  formats = tuple(formats)
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown or not formats:
    raise ExportError(f"export formats {unknown or '(none)'} are unknown; choose from "
                      f"{', '.join(FORMATS)}.")
  return formats


def export(trained: Trained, out: str | pathlib.Path, formats=FORMATS,
           images: np.ndarray | None = None) -> dict:
  """Writes ``formats`` of ``trained`` into ``out`` and checks each artifact against
  aejax (on ``images``, else the run's test set): ``{"files": [...], "max_error":
  {file: error}, "checked_on": str, "tolerance": TOLERANCE}``."""
  formats = check_formats(formats)
  out = pathlib.Path(out)
  fns = functions(trained)  # refuses before anything is written
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  if "onnx" in formats:
    paths += write_onnx(fns, out)
  if "jax" in formats:
    paths += write_jax(fns, out)
  x, checked_on = check_set(trained, images)
  errors = verify(trained, paths, x)
  if "folder" in formats:
    folder = write_folder(trained, out)
    paths += folder
  return {"files": [p.name for p in paths], "max_error": errors, "checked_on": checked_on,
          "examples": len(x), "tolerance": TOLERANCE}
