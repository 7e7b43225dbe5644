"""A search's study in Optuna's storage: the storage opened, the study made or
reopened (refused if it was made for another question), its trials as search.json
lists them, and Optuna's figures of it."""

from __future__ import annotations

import pathlib

from absl import logging

from aejax.tuner.space import SearchError, import_optuna, space_string

def open_storage(url: str | None, workdir: pathlib.Path):
  """Optuna's storage: a JournalStorage file in ``workdir`` by default; ``url`` an RDB
  URL (``sqlite:///...``, ``postgresql://...``) or a journal file's path."""
  optuna = import_optuna()
  from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415
  try:
    if url is None or "://" not in url:
      path = workdir / "study.journal" if url is None else pathlib.Path(url)
      if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
      return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(url)
  except Exception as e:  # noqa: BLE001 (any driver's error is the same one line)
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise SearchError(f"--storage={url}: cannot open the study's storage ({reason}); "
                      "give a reachable database URL or a journal file in an existing "
                      "folder.") from None


def open_study(storage, name: str, space: dict, options: dict, sampler, pruner):
  """The study ``name`` in ``storage`` (made if new), refused if it was made for
  another space, objective or direction: one study, one question."""
  optuna = import_optuna()
  try:
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                pruner=pruner, direction=options["direction"],
                                load_if_exists=True)
  except ValueError as e:
    raise SearchError(f"study {name!r}: {e}") from None
  identity = {"space": space_string(space), "objective": options["objective"],
              "direction": options["direction"]}
  saved = study.user_attrs.get("identity")
  if saved is None:
    study.set_user_attr("identity", identity)
  elif saved != identity:
    differs = ", ".join(k for k in identity if saved.get(k) != identity[k])
    raise SearchError(f"study {name!r} in this storage was made with another {differs} "
                      f"({saved[differs.split(', ')[0]]}); give the same, or another "
                      "--study name or --storage for this search.")
  return study


def records(study) -> list[dict]:
  """Every trial of ``study``, as search.json lists them."""
  out = []
  for t in study.get_trials(deepcopy=False):
    out.append({"number": t.number, "state": t.state.name.lower(), "params": t.params,
                "value": t.value, "rungs": {str(k): v for k, v in
                                            sorted(t.intermediate_values.items())},
                **{k: t.user_attrs[k] for k in ("workdir", "slot", "failed", "lost",
                                                "rerun_of", "copied_from")
                   if k in t.user_attrs}})
  return out


def plots(study, work: pathlib.Path) -> None:
  """Optuna's own figures of the study, as PNGs (a figure Optuna cannot draw for this
  study, e.g. importances of one parameter, is left out)."""
  import warnings  # noqa: PLC0415
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  from optuna.visualization import matplotlib as vis  # noqa: PLC0415
  for name, plot in (("optimization_history", vis.plot_optimization_history),
                     ("parallel_coordinate", vis.plot_parallel_coordinate),
                     ("param_importances", vis.plot_param_importances)):
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = plot(study)
      figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
      figure.savefig(work / f"{name}.png", dpi=100, bbox_inches="tight")
      plt.close(figure)
    except Exception as e:  # noqa: BLE001 (a figure is a nicety, never a failure)
      logging.info("No %s figure: %s", name, e)
