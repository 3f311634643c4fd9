"""`LRMonitor` and `ModelSummary` in real runs: the CSV log, the plan's keys, stderr, the file."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime.callbacks import ConsoleLogger, LRMonitor, ModelSummary
from stagegraph.runtime.callbacks.model_summary import summarize


def _data(n: int, seed: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    return TensorDataset(x, (x[:, 0] > 0).long())


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def _two_groups(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam([{"params": model[0].parameters(), "lr": 1e-3},
                             {"params": model[2].parameters()}], lr=1e-2, betas=(0.8, 0.95))


def _experiment(callbacks: dict[str, Any], optimizer: Any = _two_groups) -> sg.Experiment:
    exp = sg.Experiment("monitors", seed=1, model=_model, criterion=nn.CrossEntropyLoss(),
                        optimizer=optimizer,
                        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))
    exp.add_stage("train", num_epochs=2, callbacks=callbacks,
                  loaders={"train": DataLoader(_data(32, 0), batch_size=8),
                           "valid": DataLoader(_data(16, 1), batch_size=8)})
    return exp


def test_every_group_lr_and_betas_reach_the_csv_log(tmp_path: Path) -> None:
    exp = _experiment({"lr_monitor": LRMonitor(groups=2, log_batch=True)})
    plan = sg.compile(exp, logdir=str(tmp_path))
    assert plan.ok, plan.diagnostics
    writes = plan.stage("train").callback("lr_monitor").writes
    assert {"epoch_metric.lr/group0", "epoch_metric.lr/group1", "metric.lr/group0"} <= set(writes)
    sg.run(exp, device="cpu", logdir=tmp_path, verbose=False)
    with open(tmp_path / "logs" / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Read before the scheduler steps: the values each epoch trained with.
    assert [float(r["lr/group0"]) for r in rows] == pytest.approx([1e-3, 5e-4])
    assert [float(r["lr/group1"]) for r in rows] == pytest.approx([1e-2, 5e-3])
    assert float(rows[0]["beta1/group1"]) == pytest.approx(0.8)
    assert float(rows[0]["beta2/group0"]) == pytest.approx(0.95)
    assert "momentum/group0" not in rows[0]
    assert [float(r["train_lr/group1"]) for r in rows] == pytest.approx([1e-2, 5e-3])
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 5e-4])  # the optimizer's


def test_sgd_momentum_and_a_dict_of_optimizers() -> None:
    from stagegraph.runtime.callbacks.lr_monitor import group_values

    model = _model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert group_values(sgd) == {"lr/group0": 0.1, "momentum/group0": 0.9}
    runner = type("R", (), {"optimizer": {"a": sgd, "b": _two_groups(model)}})()
    assert set(LRMonitor().values(runner)) == {
        "lr/a/group0", "momentum/a/group0", *(f"{k}/b/group{i}" for k in ("lr", "beta1", "beta2")
                                              for i in (0, 1))}
    assert LRMonitor(optimizer_key="a").values(runner) == {"lr/a/group0": 0.1,
                                                           "momentum/a/group0": 0.9}
    assert LRMonitor(optimizer_key="a").writes == ("epoch_metric.lr/a/group0",)
    with pytest.raises(ValueError, match="groups"):
        LRMonitor(groups=0)


def test_model_summary_prints_to_stderr_and_writes_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = ModelSummary()
    exp = _experiment({"summary": summary})
    sg.run(exp, device="cpu", logdir=tmp_path, verbose=False)
    err = capsys.readouterr()
    assert "[train] model summary:" in err.err and "model summary" not in err.out
    text = (tmp_path / "model_summary" / "train.txt").read_text()
    lines = text.splitlines()
    assert lines[0].split() == ["module", "type", "params", "trainable", "frozen", "size", "(MB)"]
    assert lines[2].split()[:5] == ["0", "Linear", "56", "56", "0"]
    assert lines[-1].split()[:4] == ["total", "74", "74", "0"]
    rows = summary.tables["train"]
    assert [r.name for r in rows] == ["0", "1", "2", "total"]
    assert rows[-1].size_mb == pytest.approx(74 * 4 / 1024 / 1024)


def test_summary_rows_of_frozen_parts_and_dicts_of_models() -> None:
    model = _model()
    model[0].weight.requires_grad_(False)
    rows = {r.name: r for r in summarize({"net": model, "extra": nn.Linear(2, 1)})}
    assert (rows["net.0"].trainable, rows["net.0"].frozen) == (8, 48)
    assert rows["extra"].params == 3 and rows["total"].params == 77


def test_model_summary_follows_the_console_logger_stream(
        capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    exp = _experiment({"summary": ModelSummary(), "console": ConsoleLogger(file=stream)})
    sg.run(exp, device="cpu")
    text = stream.getvalue()
    assert text.index("[train] model summary:") < text.index("[train] epoch 1/2")
    assert "model summary" not in capsys.readouterr().err


def test_model_summary_goes_to_stdout_in_a_jupyter_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Like the console: a notebook shows stderr on a red ground, so stdout there."""
    kernel_stream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})()
    err = io.StringIO()
    monkeypatch.setattr("sys.stdout", kernel_stream)
    monkeypatch.setattr("sys.stderr", err)
    sg.run(_experiment({"summary": ModelSummary()}), device="cpu", verbose=False)
    assert "[train] model summary:" in kernel_stream.getvalue()
    assert "model summary" not in err.getvalue()
