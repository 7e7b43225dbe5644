"""A search's study in Optuna's storage: the storage opened, the study made or
reopened (refused if it was made for another question), its trials as search.json
lists them, and Optuna's figures of it."""

from __future__ import annotations

import pathlib
import time

from absl import logging

from aejax.tuner.space import SearchError, import_optuna, space_string

def open_storage(url: str | None, workdir: pathlib.Path):
  """Optuna's storage: a JournalStorage file in ``workdir`` by default; ``url`` an RDB
  URL (``sqlite:///...``, ``postgresql://...``) or a journal file's path; an RDB that
  does not answer within ``CONNECT_TIMEOUT_S`` is one SearchError, as is any other
  failure to open."""
  optuna = import_optuna()
  from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415
  try:
    if url is None or "://" not in url:
      path = workdir / "study.journal" if url is None else pathlib.Path(url)
      if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
      return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return _open_database(url)
  except Exception as e:  # noqa: BLE001 (any driver's error is the same one line)
    # Optuna words a missing driver without its name; the import's own error has it.
    cause = e.__cause__ if isinstance(e.__cause__, ImportError) else e
    reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    raise SearchError(f"--storage={url}: cannot open the study's storage ({reason}); "
                      "give a reachable database URL or a journal file in an existing "
                      "folder.") from None


def _open_database(url: str, tries: int = 5):
  """Optuna's RDBStorage at ``url``. Processes that open a new database at once race
  to make Optuna's tables (PostgreSQL refuses the loser a duplicate pg_type key): one
  whose statement failed opens again, and finds the tables made. One that could not
  connect does not; it has its answer."""
  optuna = import_optuna()
  for attempt in range(tries - 1):
    try:
      return optuna.storages.RDBStorage(url, engine_kwargs=_connect_timeout(url))
    except Exception as e:  # noqa: BLE001 (told apart by where it failed)
      if not _in_a_statement(e):
        raise
      logging.info("Opening %s again after %s", url, type(e).__name__)
      time.sleep(0.2 * (attempt + 1))
  return optuna.storages.RDBStorage(url, engine_kwargs=_connect_timeout(url))


def _in_a_statement(error: BaseException | None) -> bool:
  """Whether ``error`` (or what caused it) is SQLAlchemy's for a statement the
  database ran and refused, as opposed to a connection never made."""
  import sqlalchemy  # noqa: PLC0415
  while error is not None:
    if isinstance(error, sqlalchemy.exc.StatementError) and error.statement is not None:
      return True
    error = error.__cause__ or error.__context__
  return False


# The drivers whose connect() takes ``connect_timeout`` in seconds (libpq's for
# PostgreSQL, and MySQL's). Without it, a port that takes the connection and never
# answers holds the search for ever, and a host that drops packets for the system's
# TCP timeout (minutes), before its one error line.
_TIMEOUT_DRIVERS = ("psycopg", "psycopg2", "mysqldb", "pymysql")
CONNECT_TIMEOUT_S = 10


def _connect_timeout(url: str) -> dict:
  """SQLAlchemy's engine arguments for ``url``: a connect timeout where its driver
  takes one and the URL sets none (``?connect_timeout=`` in it wins)."""
  import sqlalchemy  # noqa: PLC0415
  parsed = sqlalchemy.engine.make_url(url)
  driver = parsed.get_dialect().driver
  if driver not in _TIMEOUT_DRIVERS or "connect_timeout" in parsed.query:
    return {}
  return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}


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
