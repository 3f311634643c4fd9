"""A tiny two-stage experiment for the tracker loggers (TensorBoard, MLflow), stoppable at the
start of a global epoch, and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime import RunError
from stagegraph.runtime.callbacks import AccuracyCallback, EarlyStoppingCallback

GLOBAL_EPOCHS = 5  # warmup: 1-2, train: 3-5


class Stop(Exception):
    """The in-process stand-in for a kill."""


class Stopper(sg.Callback):
    """Raises `Stop` when global epoch ``at`` starts."""

    scope = sg.CallbackScope.experiment

    def __init__(self, at: int | None) -> None:
        super().__init__()
        self.at = at

    def on_epoch_start(self, runner: Any) -> None:
        if runner.global_epoch == self.at:
            raise Stop(f"global epoch {self.at}")


def _loaders() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=generator)
    data = TensorDataset(x, (x[:, 0] > x[:, 1]).long())
    return {"train": lambda: DataLoader(data, batch_size=8),
            "valid": lambda: DataLoader(data, batch_size=12)}


def _two_groups(model: nn.Module) -> torch.optim.Optimizer:
    first, second = model[0], model[2]  # type: ignore[index]
    return torch.optim.SGD([{"params": first.parameters(), "lr": 0.1},
                            {"params": second.parameters(), "lr": 0.01}])


def build(logger: sg.Callback, stop_at: int | None = None,
          train_logger: sg.Callback | None = None) -> sg.Experiment:
    """Stage ``warmup`` (2 epochs, two param groups) then ``train`` (3 epochs, Adam), with
    ``logger`` declared in ``warmup`` (with ``scope="experiment"`` it carries on into ``train``)
    and ``train_logger``, if given, in ``train``."""
    exp = sg.Experiment("tiny", seed=1, criterion=nn.CrossEntropyLoss,
                        model=lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    exp.add_stage("warmup", num_epochs=2, loaders=_loaders(), optimizer=_two_groups,
                  main_metric="accuracy", minimize_metric=False,
                  callbacks={"accuracy": AccuracyCallback(), "logger": logger,
                             "stopper": Stopper(stop_at)})
    exp.add_stage("train", num_epochs=3, loaders=_loaders(),
                  optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.003),
                  callbacks={"accuracy": AccuracyCallback(),
                             "early_stopping": EarlyStoppingCallback(patience=5),
                             **({"logger": train_logger} if train_logger else {})})
    return exp


def run(logdir: Path, logger: sg.Callback, stop_at: int | None = None,
        train_logger: sg.Callback | None = None, **runner: Any) -> Any:
    """Run into ``logdir``; stopped by `Stopper`, it returns ``None``."""
    plan = sg.compile(build(logger, stop_at, train_logger), device="cpu", verbose=False,
                      logdir=str(logdir))
    try:
        return sg.Runner(plan, **runner).run()
    except RunError as err:
        if not isinstance(err.__cause__, Stop):
            raise
        return None
