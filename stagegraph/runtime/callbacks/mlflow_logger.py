"""`MLflowLogger`: the experiment as one MLflow run — parameters, epoch metrics, the plan and
the best checkpoints."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder
from stagegraph.runtime.callbacks import mlflow_run
from stagegraph.runtime.callbacks.mlflow_run import LOGGED_THROUGH, MLFLOW_HINT, Session, key
from stagegraph.runtime.callbacks.run_params import (
    epoch_scalars,
    experiment_params,
    learning_rates,
    stage_loaders,
)

# The open run of each runner: each stage has its own logger, and they share the run.
_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


def _end_of_run(runner: Any) -> None:
    """Ends the runner's MLflow run if no logger did: a last stage without a logger, a failure
    before the failing stage's logger started, or a signal's stop (``KILLED``: no callback
    fires on a stop)."""
    session = _SESSIONS.pop(runner, None)
    if session is None or session.finished:
        return
    error, stopped = runner.exception, getattr(runner, "stopped", None)
    status = ("KILLED" if stopped is not None or isinstance(error, KeyboardInterrupt)
              else "FAILED" if error is not None else "FINISHED")
    try:
        if status != "FINISHED":
            stage = "stopped" if stopped is not None else "failed"
            session.client.set_tag(session.run_id, key(f"stage.{runner.stage_name}.status"), stage)
        session.client.set_terminated(session.run_id, status=status)
        session.finished = True
    except Exception as err:  # the run has ended: a tracker that cannot say so is a warning
        warnings.warn(f"MLflowLogger: could not mark MLflow run {session.run_id} {status}: "
                      f"{err}", stacklevel=2)


class MLflowLogger(Callback):
    """Logs the experiment to one MLflow run (master rank only).

    Where: ``tracking_uri`` if given, else the ``MLFLOW_TRACKING_URI`` environment variable,
    else a local SQLite store in the logdir, ``{folder}/mlflow.db``, with artifacts in
    ``{folder}/artifacts/`` (browse it with ``mlflow ui --backend-store-uri
    sqlite:///LOGDIR/mlflow/mlflow.db``). The MLflow experiment is ``experiment_name``
    (default: the stagegraph experiment's name), the run ``run_name`` (default: MLflow's).

    What: when the run starts, the experiment's parameters (seed, each stage's plan parameters,
    components and callbacks with their arguments), the plan as ``plan/plan.json`` and, where
    Graphviz's ``dot`` is installed, ``plan/plan.svg``. At each epoch end every epoch metric as
    ``{metric}/{loader}`` (``loss/valid``) and the learning rate of every param group
    (``lr/group0``, read before the scheduler steps) at step ``global_epoch``, continuing
    across stages. Per stage, the tags ``stage.{name}.status`` (running, finished, failed,
    stopped) and ``stage.{name}.global_epochs``;
    at the stage's end, the best checkpoint files of its `CheckpointCallback` under
    ``checkpoints/{stage}/`` (``log_checkpoints=False`` leaves them out). The run is
    ``FINISHED`` when the last stage ends, ``FAILED`` (``KILLED`` on Ctrl-C) when the run fails,
    ``KILLED`` when a signal stops it; the runner's ``at_run_end`` ends it when no logger could
    (the last or the failing stage has no logger of its own, or a signal stopped the run).

    Resume: ``{folder}/run.json`` names the run and its store; a resumed run continues it
    (verifying the store holds it; without ``tracking_uri`` or ``MLFLOW_TRACKING_URI``, in the
    store the file names) and logs only the epochs after the last one the run holds.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*",)
    kind: ClassVar[str | None] = "mlflow"
    needs: ClassVar[tuple[str, ...]] = ("logdir",)

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None,
                 run_name: str | None = None, tags: Mapping[str, str] | None = None,
                 log_checkpoints: bool = True, folder: str = "mlflow",
                 **declarations: Any) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise ImportError(MLFLOW_HINT)
        declarations.setdefault("claims", (f"files:{folder}/",))
        super().__init__(**declarations)
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.log_checkpoints = log_checkpoints
        self.folder = folder
        self.session: Session | None = None
        self._loaders: tuple[str, ...] = ()
        self._rates: dict[str, float] = {}

    # --- events -------------------------------------------------------------------------------
    def on_stage_start(self, runner: Any) -> None:
        if runner.logdir is None:
            raise ValueError("MLflowLogger needs a logdir (it keeps the run's id there): pass "
                             "logdir= to compile/Runner, or --logdir")
        session = _SESSIONS.get(runner)
        if session is None:
            session = _SESSIONS[runner] = self._open(runner)
            hooks = getattr(runner, "at_run_end", None)  # a stub runner in a test has none
            if hooks is not None:
                hooks.append(_end_of_run)
        self.session, self._loaders, self._rates = session, stage_loaders(runner), {}
        self._tag(f"stage.{runner.stage_name}.status", "running")

    def on_loader_end(self, runner: Any) -> None:
        # The rates the epoch trained with: the scheduler steps at epoch end, before loggers.
        self._rates = learning_rates(runner.optimizer)

    def on_epoch_end(self, runner: Any) -> None:
        from mlflow.entities import Metric, RunTag

        session, step = self.session, int(runner.global_epoch)
        if session is None or step <= session.logged_through:
            return  # a resumed run: the run holds this epoch already
        values = epoch_scalars(runner.epoch_metrics, self._loaders, self._rates)
        now = int(time.time() * 1000)
        metrics = [Metric(key(name), value, now, step) for name, value in values.items()]
        session.client.log_batch(session.run_id, metrics=metrics,
                                 tags=[RunTag(LOGGED_THROUGH, str(step))])
        session.logged_through = step

    def on_stage_end(self, runner: Any) -> None:
        session = self.session
        if session is None:
            return
        first = int(runner.global_epoch) - int(runner.epoch) + 1  # a resumed stage's first too
        self._tag(f"stage.{runner.stage_name}.global_epochs", f"{first}-{runner.global_epoch}")
        self._tag(f"stage.{runner.stage_name}.status", "finished")
        if self.log_checkpoints:
            self._log_checkpoints(runner)
        if runner.plan is not None and runner.plan.stages[-1].name == runner.stage_name:
            self._finish("FINISHED")

    def on_experiment_end(self, runner: Any) -> None:
        self._finish("FINISHED")

    def on_exception(self, runner: Any) -> None:
        # The run's session, though this stage's logger may not have started.
        self.session = _SESSIONS.get(runner)
        try:  # never hide the failure: a tracker that cannot say so is a warning
            self._tag(f"stage.{runner.stage_name}.status", "failed")
            failed = "KILLED" if isinstance(runner.exception, KeyboardInterrupt) else "FAILED"
            self._finish(failed)
        except Exception as err:
            warnings.warn(f"MLflowLogger: could not mark the MLflow run failed: {err}",
                          stacklevel=2)

    # --- the run ------------------------------------------------------------------------------
    def _open(self, runner: Any) -> Session:
        try:
            from mlflow import MlflowClient
        except ImportError as err:
            raise ImportError(MLFLOW_HINT) from err
        folder = Path(runner.logdir) / self.folder
        folder.mkdir(parents=True, exist_ok=True)
        record, where = self._run_record(runner, folder)
        uri = mlflow_run.tracking_uri(self.tracking_uri, folder.resolve(), record)
        client = MlflowClient(tracking_uri=uri)
        if record is not None:
            session = mlflow_run.continue_run(client, uri, record, where, own=where == folder)
            experiment_id = str(record.get("experiment_id", ""))
        else:
            session, experiment_id = self._start(runner, client, uri, folder)
        mlflow_run.write_run_file(folder, session, experiment_id)
        params = experiment_params(runner.plan, getattr(runner, "experiment", None))
        mlflow_run.log_params(session, params)
        return session

    def _run_record(self, runner: Any, folder: Path) -> tuple[dict[str, Any] | None, Path]:
        """The run a resumed run continues: named in this logdir, else in the one resumed."""
        resumed_from = getattr(runner, "resumed_from", None)
        if resumed_from is None:
            return None, folder
        from stagegraph.runtime.resume.store import logdir_of  # the resume package needs us

        places = [folder]
        source = logdir_of(Path(resumed_from))
        if source is not None:
            places.append(source / self.folder)
        for place in places:
            record = mlflow_run.read_run_file(place)
            if record is not None:
                return record, place
        warnings.warn(f"MLflowLogger: the resumed run has no {folder / mlflow_run.RUN_FILE} "
                      "naming the MLflow run it logged to, so it logs to a new MLflow run",
                      stacklevel=3)
        return None, folder

    def _start(self, runner: Any, client: Any, uri: str, folder: Path) -> tuple[Session, str]:
        plan = runner.plan
        tags = {"stagegraph.plan_hash": plan.hash,
                "stagegraph.logdir": str(Path(runner.logdir).resolve()), **self.tags}
        session, experiment_id = mlflow_run.start_run(
            client, uri, folder, experiment=self.experiment_name or plan.experiment,
            run_name=self.run_name, tags=tags,
            local=not self.tracking_uri and uri.startswith("sqlite:"))
        self._log_plan(session, plan)
        return session, experiment_id

    def _log_plan(self, session: Session, plan: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="stagegraph-plan-") as tmp:
            files = [Path(tmp) / "plan.json"]
            files[0].write_text(plan.to_json() + "\n", encoding="utf-8")
            if shutil.which("dot") is not None:
                try:
                    svg = plan.to_graphviz().pipe(format="svg")
                except Exception as err:  # a drawing is a nicety: the run goes on without it
                    warnings.warn(f"MLflowLogger: could not draw the plan: {err}", stacklevel=4)
                else:
                    files.append(Path(tmp) / "plan.svg")
                    files[1].write_bytes(svg)
            for path in files:
                session.client.log_artifact(session.run_id, str(path), "plan")

    def _log_checkpoints(self, runner: Any) -> None:
        """The best files of the stage's checkpoint callbacks, once they are written."""
        from stagegraph.runtime.callbacks.checkpoint import CheckpointCallback
        from stagegraph.runtime.callbacks.writer import writer_of

        assert self.session is not None
        callbacks = [cb for cb in (runner.callbacks or {}).values()
                     if isinstance(cb, CheckpointCallback) and cb.folder is not None]
        if callbacks:
            writer_of(runner).wait()
        for cb in callbacks:
            assert cb.folder is not None
            names = [cb.best[0]] if cb.best is not None else []
            names += [name for _, _, name in cb.top]
            for name in dict.fromkeys(names):
                path = cb.folder / name
                if path.exists():
                    self.session.client.log_artifact(self.session.run_id, str(path),
                                                     f"checkpoints/{runner.stage_name}")

    def _tag(self, name: str, value: str) -> None:
        if self.session is not None:
            self.session.client.set_tag(self.session.run_id, key(name), value)

    def _finish(self, status: str) -> None:
        session = self.session
        if session is not None and not session.finished:
            session.client.set_terminated(session.run_id, status=status)
            session.finished = True

    def __repr__(self) -> str:
        return f"MLflowLogger(folder={self.folder!r})"
