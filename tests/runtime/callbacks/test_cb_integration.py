"""The built-in callbacks inside real runs through `stagegraph.run` / `stagegraph.Runner`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime.callbacks import (
    AccuracyCallback,
    EarlyStoppingCallback,
    OptimizerCallback,
    PredictionWriter,
    TimerCallback,
)


def _data(n: int, seed: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 6, generator=gen)
    return TensorDataset(features, (features[:, 0] + features[:, 1] > 0).long())


def _loaders() -> dict[str, DataLoader]:
    return {"train": DataLoader(_data(96, 0), batch_size=16, shuffle=True),
            "valid": DataLoader(_data(40, 1), batch_size=16)}


def _experiment(lr: float = 0.5, **stage: Any) -> sg.Experiment:
    exp = sg.Experiment("callbacks", seed=3, model=lambda: nn.Linear(6, 2),
                        criterion=nn.CrossEntropyLoss(),
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=lr))
    stage.setdefault("callbacks", {})
    exp.add_stage("train", loaders=_loaders(), main_metric="accuracy", minimize_metric=False,
                  **stage)
    return exp


def test_defaults_train_validate_checkpoint_and_log(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    exp = _experiment(num_epochs=3, callbacks={"accuracy": AccuracyCallback(topk=(1, 2)),
                                               "timer": TimerCallback()})
    exp.add_stage("infer", loaders={"infer": DataLoader(_data(40, 1), batch_size=16)},
                  callbacks={"predictions": PredictionWriter(argmax=True)})
    runner = sg.run(exp, device="cpu", logdir=tmp_path)
    assert runner.exception is None

    checkpoint = torch.load(tmp_path / "checkpoints" / "train.last.pth", weights_only=True)
    assert checkpoint["plan_hash"] == runner.plan.hash
    assert checkpoint["counters"]["epoch"] == 3
    assert checkpoint["counters"]["global_batch_step"] == 3 * (6 + 3)
    metrics = checkpoint["epoch_metrics"]
    assert {"train_loss", "train_accuracy", "train_accuracy02", "valid_loss", "valid_accuracy",
            "lr", "valid__timer/batch_time"} <= set(metrics)
    assert metrics["lr"] == 0.5
    assert checkpoint["valid_metrics"]["accuracy"] == metrics["valid_accuracy"]
    best = checkpoint["best_valid_metrics"]["accuracy"]
    assert best == max(checkpoint["valid_metrics"]["accuracy"], best)
    assert best > 0.8  # a linearly separable problem

    with open(tmp_path / "logs" / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert float(rows[-1]["valid_accuracy"]) == pytest.approx(metrics["valid_accuracy"])

    predictions = torch.load(tmp_path / "predictions" / "infer_infer.pt", weights_only=True)
    assert predictions["logits"].shape == (40, 2)

    out = capsys.readouterr().err  # the console writes to stderr
    assert "[train] epoch 3/3" in out and "best valid metrics per stage:" in out
    assert "_timer" not in out.split("best valid metrics")[0].split("[train] epoch 1/3")[1]


def test_early_stopping_ends_the_stage(tmp_path: Path) -> None:
    # lr=0: the metric never improves, so patience 1 stops after the second epoch.
    exp = _experiment(lr=0.0, num_epochs=5,
                      callbacks={"accuracy": AccuracyCallback(),
                                 "early_stopping": EarlyStoppingCallback(patience=1)})
    runner = sg.run(exp, device="cpu", logdir=tmp_path, verbose=False)
    assert runner.epoch == 2
    with open(tmp_path / "logs" / "train.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_accumulation_through_the_runner_matches_big_batches() -> None:
    def run(batch_size: int, accumulation: int) -> nn.Module:
        exp = sg.Experiment("acc", seed=0, model=lambda: nn.Linear(6, 2),
                            criterion=nn.CrossEntropyLoss(),
                            optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
        exp.add_stage("train", num_epochs=1, loaders={
            "train": DataLoader(_data(64, 0), batch_size=batch_size),
            "valid": DataLoader(_data(16, 1), batch_size=16)},
            callbacks={"optimizer": OptimizerCallback(accumulation_steps=accumulation)})
        return sg.run(exp, device="cpu", verbose=False).model

    small, big = run(8, 4), run(32, 1)
    for a, b in zip(small.parameters(), big.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_plateau_scheduler_gets_the_main_metric(tmp_path: Path) -> None:
    # A tiny lr leaves the valid accuracy where it is: epochs 2 and 3 are plateaus.
    exp = _experiment(lr=1e-7, num_epochs=3, callbacks={"accuracy": AccuracyCallback()},
                      scheduler=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
                          o, mode="max", patience=0, factor=0.5))
    runner = sg.run(exp, device="cpu", verbose=False)
    assert runner.plan.stages[0].callback("scheduler").origin == "default"
    assert runner.optimizer.param_groups[0]["lr"] == pytest.approx(0.25e-7)


def test_an_exception_leaves_a_post_mortem_checkpoint(tmp_path: Path) -> None:
    class Explode(sg.Callback):
        order = sg.CallbackOrder.External

        def on_epoch_end(self, runner: Any) -> None:
            if runner.epoch == 2:
                raise RuntimeError("boom")

    exp = _experiment(num_epochs=3, callbacks={"accuracy": AccuracyCallback(),
                                               "explode": Explode()})
    with pytest.raises(Exception, match="boom"):
        sg.run(exp, device="cpu", logdir=tmp_path, verbose=False)
    folder = tmp_path / "checkpoints"
    assert (folder / "train.exception.pth").exists()
    post_mortem = torch.load(folder / "train.exception.pth", weights_only=True)
    assert "boom" in post_mortem["exception"]
    assert post_mortem["counters"]["epoch"] == 2
    assert not list(folder.glob("*.tmp"))
