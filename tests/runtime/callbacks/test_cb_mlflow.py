"""MLflowLogger after real runs into the local store under the logdir, read back with
`mlflow.MlflowClient`; a stopped run resumed continues the same MLflow run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import tracker_helpers
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tracker_helpers import GLOBAL_EPOCHS, run

import stagegraph as sg
from stagegraph.runtime import RunError
from stagegraph.runtime.callbacks import MLflowLogger


def _client(logdir: Path) -> Any:
    """A client of the store the logdir's run went to."""
    from mlflow import MlflowClient

    record = json.loads((logdir / "mlflow" / "run.json").read_text())
    return MlflowClient(tracking_uri=record["tracking_uri"])


def _run_id(logdir: Path) -> str:
    return str(json.loads((logdir / "mlflow" / "run.json").read_text())["run_id"])


def _steps(client: Any, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def _ending(logdir: Path) -> tuple[str, dict[str, str]]:
    """The run's status and its ``stage.*`` tags."""
    found = _client(logdir).get_run(_run_id(logdir))
    return found.info.status, {k: v for k, v in found.data.tags.items()
                               if k.startswith("stage.")}


def _artifacts(client: Any, run_id: str, path: str) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run_id, path))


@pytest.fixture(autouse=True)
def _local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for the tests that need no store of their own (making one takes seconds)."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    for name in ("lr", "tiny"):  # with their artifacts there too, not in the working directory
        client.create_experiment(name, artifact_location=(folder / name).as_uri())
    return uri


def test_one_run_with_params_metrics_tags_and_artifacts(tmp_path: Path) -> None:
    # A logger per stage: the second one continues the run the first one started.
    run(tmp_path, MLflowLogger(tags={"team": "vision"}), train_logger=MLflowLogger())
    client, run_id = _client(tmp_path), _run_id(tmp_path)
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert client.get_experiment(found.info.experiment_id).name == "tiny"
    params = found.data.params
    assert params["seed"] == "1" and params["warmup.num_epochs"] == "2"
    assert params["train.callbacks.early_stopping.patience"] == "5"
    assert params["warmup.optimizer"].endswith("_two_groups")
    every = list(range(1, GLOBAL_EPOCHS + 1))
    for metric in ("loss/train", "loss/valid", "accuracy/valid", "lr/group0"):
        assert _steps(client, run_id, metric) == every, metric
    assert _steps(client, run_id, "lr/group1") == [1, 2]  # warmup's second param group
    tags = found.data.tags
    assert tags["team"] == "vision" and tags["stagegraph.plan_hash"]
    assert tags["stage.warmup.global_epochs"] == "1-2"
    assert tags["stage.train.global_epochs"] == "3-5"
    assert tags["stage.train.status"] == "finished"
    assert params["train.callbacks.logger"] == "MLflowLogger"
    plan = _artifacts(client, run_id, "plan")
    assert "plan/plan.json" in plan
    assert ("plan/plan.svg" in plan) == (shutil.which("dot") is not None)
    for stage in ("warmup", "train"):
        files = _artifacts(client, run_id, f"checkpoints/{stage}")
        assert f"checkpoints/{stage}/{stage}.best.pth" in files
    assert (tmp_path / "mlflow" / "artifacts").is_dir()  # artifacts stay in the logdir


def test_a_resumed_run_continues_the_same_mlflow_run(tmp_path: Path) -> None:
    source, moved, lost = tmp_path / "run", tmp_path / "moved", tmp_path / "lost"
    assert run(source, MLflowLogger(scope="experiment"), stop_at=5) is None  # 1-4 logged
    client, run_id = _client(source), _run_id(source)
    assert client.get_run(run_id).info.status == "FAILED"
    shutil.copytree(source, lost)
    latest = source / "checkpoints" / "resume" / "epoch-000004.pth"
    latest.write_bytes(latest.read_bytes()[:100])  # the resume starts after epoch 3
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # resumed into another logdir, with the default store
        resumed = run(moved, MLflowLogger(scope="experiment"), stop_at=99, resume=str(source))
    # The stopping point is a callback's argument, a parameter MLflow cannot change.
    changed = [str(w.message) for w in seen if "MLflow cannot change" in str(w.message)]
    assert len(changed) == 1 and "warmup.callbacks.stopper.at" in changed[0]
    assert resumed.resumed_from.name == "epoch-000003.pth"
    assert _run_id(moved) == run_id and _client(moved).tracking_uri == client.tracking_uri
    assert not (moved / "mlflow" / "mlflow.db").exists()  # the run's store is the source's
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert found.data.tags["stage.train.global_epochs"] == "3-5"  # resumed in its epoch 2
    every = list(range(1, GLOBAL_EPOCHS + 1))
    assert _steps(client, run_id, "loss/valid") == every  # epoch 4, run twice, logged once

    # A run the store does not hold: deleting the record is advised in the run's own logdir,
    # never in the source of a resume into another one.
    lost_store = f"sqlite:///{lost.resolve() / 'mlflow' / 'mlflow.db'}"  # a copy: no new store
    (lost / "mlflow" / "run.json").write_text(json.dumps({"run_id": "0" * 32,
                                                          "tracking_uri": lost_store}))
    for logdir, resume in ((lost, True), (tmp_path / "again", str(lost))):
        with pytest.raises(RunError) as caught:
            run(logdir, MLflowLogger(scope="experiment"), resume=resume)
        message = str(caught.value.__cause__)
        assert f"continues MLflow run {'0' * 32}" in message and "does not hold it" in message
        assert ("delete" in message) == (logdir == lost), message


def test_missing_mlflow_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match=r"pip install 'stagegraph\[mlflow\]'"):
        MLflowLogger()


def test_the_run_ends_with_its_last_stage_and_logs_the_rates_epochs_trained_with(
        tmp_path: Path, store: str) -> None:
    # The logger is the first stage's only: the run still ends when the experiment does.
    x = torch.randn(16, 4)
    data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    exp = sg.Experiment("lr", seed=0, model=lambda: nn.Linear(4, 2),
                        criterion=nn.CrossEntropyLoss())
    exp.add_stage("s", num_epochs=3, loaders={"train": data, "valid": data},
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                  scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.5),
                  callbacks={"mlflow": MLflowLogger(tracking_uri=store)})
    exp.add_stage("more", loaders={"train": data, "valid": data},
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    sg.run(exp, device="cpu", verbose=False, logdir=str(tmp_path))
    assert _ending(tmp_path) == ("FINISHED", {"stage.s.status": "finished",
                                              "stage.s.global_epochs": "1-3"})
    history = _client(tmp_path).get_metric_history(_run_id(tmp_path), "lr/group0")
    rates = sorted((m.step, round(m.value, 6)) for m in history)
    assert rates == [(1, 0.1), (2, 0.05), (3, 0.025)]  # before the scheduler steps


class _FailsToStart(sg.Callback):
    scope = sg.CallbackScope.experiment

    def on_stage_start(self, runner: Any) -> None:
        if runner.stage_name == "train":
            raise RuntimeError("boom")


def test_a_stage_failing_before_its_logger_starts_fails_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str) -> None:
    # The failing callback runs before the train stage's logger: on_exception still ends the run.
    monkeypatch.setattr(tracker_helpers, "Stopper", lambda at: _FailsToStart())
    with pytest.raises(RunError, match="boom"):
        run(tmp_path, MLflowLogger(tracking_uri=store),
            train_logger=MLflowLogger(tracking_uri=store))
    status, tags = _ending(tmp_path)
    assert status == "FAILED" and tags["stage.train.status"] == "failed"


class _Terminate(sg.Callback):
    """SIGTERM to this process in global epoch 3 (not in a resumed run): the runner stops
    there, and no callback fires."""

    scope = sg.CallbackScope.experiment

    def on_epoch_start(self, runner: Any) -> None:
        if runner.global_epoch == 3 and runner.resumed_from is None:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_stop_kills_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      store: str) -> None:
    monkeypatch.setattr(tracker_helpers, "Stopper", lambda at: _Terminate())
    stopped = run(tmp_path, MLflowLogger(tracking_uri=store, scope="experiment"))
    assert stopped.stopped is not None and stopped.stopped.signal == "SIGTERM"
    assert _ending(tmp_path) == ("KILLED", {"stage.warmup.status": "finished",
                                            "stage.warmup.global_epochs": "1-2",
                                            "stage.train.status": "stopped"})
    run(tmp_path, MLflowLogger(tracking_uri=store, scope="experiment"), resume=True)
    status, tags = _ending(tmp_path)
    assert status == "FINISHED" and tags["stage.train.status"] == "finished"
    every = list(range(1, GLOBAL_EPOCHS + 1))
    assert _steps(_client(tmp_path), _run_id(tmp_path), "loss/valid") == every
