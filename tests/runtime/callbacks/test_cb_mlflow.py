"""MLflowLogger after real runs into the local store under the logdir, read back with
`mlflow.MlflowClient`; a stopped run resumed continues the same MLflow run."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from tracker_helpers import GLOBAL_EPOCHS, run

from stagegraph.runtime import RunError
from stagegraph.runtime.callbacks import MLflowLogger


def _client(logdir: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{logdir.resolve() / 'mlflow' / 'mlflow.db'}")


def _run_id(logdir: Path) -> str:
    return str(json.loads((logdir / "mlflow" / "run.json").read_text())["run_id"])


def _steps(client: Any, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def _artifacts(client: Any, run_id: str, path: str) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run_id, path))


@pytest.fixture(autouse=True)
def _local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


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
    assert run(tmp_path, MLflowLogger(scope="experiment"), stop_at=4) is None  # 1-3 logged
    client, run_id = _client(tmp_path), _run_id(tmp_path)
    assert client.get_run(run_id).info.status == "FAILED"
    shutil.copytree(tmp_path, tmp_path.with_name(tmp_path.name + "-lost"))
    latest = tmp_path / "checkpoints" / "resume" / "epoch-000003.pth"
    latest.write_bytes(latest.read_bytes()[:100])  # the resume starts after epoch 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        resumed = run(tmp_path, MLflowLogger(scope="experiment"), stop_at=99, resume=True)
    # The stopping point is a callback's argument, a parameter MLflow cannot change.
    changed = [str(w.message) for w in seen if "MLflow cannot change" in str(w.message)]
    assert len(changed) == 1 and "warmup.callbacks.stopper.at" in changed[0]
    assert resumed.resumed_from.name == "epoch-000002.pth"
    assert _run_id(tmp_path) == run_id
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1
    assert client.get_run(run_id).info.status == "FINISHED"
    every = list(range(1, GLOBAL_EPOCHS + 1))
    assert _steps(client, run_id, "loss/valid") == every  # epoch 3, run twice, logged once

    lost = tmp_path.with_name(tmp_path.name + "-lost")
    (lost / "mlflow" / "run.json").write_text(json.dumps({"run_id": "0" * 32}))
    with pytest.raises(RunError) as caught:
        run(lost, MLflowLogger(scope="experiment"), resume=True)
    message = str(caught.value.__cause__)
    assert f"continues MLflow run {'0' * 32}" in message and "does not hold it" in message
    assert "delete" in message and "run.json" in message


def test_missing_mlflow_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match=r"pip install 'stagegraph\[mlflow\]'"):
        MLflowLogger()
