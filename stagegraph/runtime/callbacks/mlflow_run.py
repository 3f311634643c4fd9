"""The MLflow run of an experiment: where it is tracked, and starting or continuing it."""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagegraph.runtime.callbacks.files import atomic_write

MLFLOW_HINT = ("MLflowLogger needs the 'mlflow' package: pip install 'stagegraph[mlflow]' "
               "(or pip install mlflow)")
#: The file, in the logger's folder, that names the MLflow run a resumed run continues.
RUN_FILE = "run.json"
#: The tag that holds the last global epoch logged: a resumed run logs only the epochs after it.
LOGGED_THROUGH = "stagegraph.global_epoch"
#: MLflow's limits: a parameter key's length, and parameters per `log_batch` call.
MAX_KEY, BATCH = 250, 100
_NOT_IN_A_KEY = re.compile(r"[^\w\-. /]")


@dataclass
class Session:
    """An open MLflow run: the client, the run id, and the last global epoch it holds."""

    client: Any
    run_id: str
    tracking_uri: str
    logged_through: int = 0
    finished: bool = False


def tracking_uri(given: str | None, logdir: Path, record: dict[str, Any] | None = None) -> str:
    """``given``, else ``MLFLOW_TRACKING_URI``, else the store of the run ``record`` names (a
    resumed run, maybe from another logdir), else an SQLite store in ``logdir``."""
    if given:
        return given
    logged_to = record.get("tracking_uri") if record is not None else None
    return (os.environ.get("MLFLOW_TRACKING_URI")
            or (logged_to if isinstance(logged_to, str) and logged_to else None)
            or f"sqlite:///{logdir / 'mlflow.db'}")


def key(name: str) -> str:
    """A metric or parameter name MLflow accepts: other characters become ``_``, at most
    `MAX_KEY` characters."""
    return _NOT_IN_A_KEY.sub("_", name)[:MAX_KEY]


def read_run_file(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("run_id"), str) else None


def write_run_file(folder: Path, session: Session, experiment_id: str) -> None:
    record = {"run_id": session.run_id, "experiment_id": experiment_id,
              "tracking_uri": session.tracking_uri}
    atomic_write(folder / RUN_FILE, (json.dumps(record, indent=2) + "\n").encode("utf-8"))


def start_run(client: Any, uri: str, folder: Path, *, experiment: str, run_name: str | None,
              tags: dict[str, str], local: bool) -> tuple[Session, str]:
    """A new run in MLflow experiment ``experiment`` (made if missing; for the local store,
    with its artifacts in ``folder/artifacts``)."""
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = (folder / "artifacts").resolve().as_uri() if local else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    return Session(client, run.info.run_id, uri), experiment_id


def continue_run(client: Any, uri: str, record: dict[str, Any], where: Path,
                 own: bool = True) -> Session:
    """The run ``record`` (read from ``where``: this run's folder if ``own``, else the resumed
    run's) names, running again; `RuntimeError` if the store does not hold it."""
    from mlflow.exceptions import MlflowException

    run_id = record["run_id"]
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        logged_to = record.get("tracking_uri")
        store = f" ({logged_to})" if logged_to and logged_to != uri else ""
        fresh = (f", or delete {where / RUN_FILE} to log the rest of the run to a new MLflow run"
                 if own else "")
        raise RuntimeError(
            f"MLflowLogger: the resumed run continues MLflow run {run_id} ({where / RUN_FILE}), "
            f"and the tracking store {uri} does not hold it ({err.message}); resume with the "
            f"store it was logged to{store} (MLflowLogger(tracking_uri=...) or "
            f"MLFLOW_TRACKING_URI){fresh}") from None
    client.update_run(run_id, status="RUNNING")
    session = Session(client, run_id, uri)
    session.logged_through = int(run.data.tags.get(LOGGED_THROUGH, 0))
    return session


def log_params(session: Session, params: dict[str, Any]) -> None:
    """``params`` not yet in the run (a continued run keeps those it has: MLflow refuses to
    change a parameter; a changed one is a warning)."""
    from mlflow.entities import Param

    have = session.client.get_run(session.run_id).data.params
    values = {key(name): str(value) for name, value in params.items()}
    changed = sorted(name for name, value in values.items()
                     if name in have and have[name] != value)
    if changed:
        warnings.warn(f"MLflowLogger: run {session.run_id} keeps the values it logged for "
                      f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}: MLflow "
                      "cannot change a parameter", stacklevel=3)
    new = [Param(name, value) for name, value in values.items() if name not in have]
    for start in range(0, len(new), BATCH):
        session.client.log_batch(session.run_id, params=new[start:start + BATCH])
