"""A small three-stage experiment for in-process resume tests, and what to compare after a run.

Stage ``a`` (2 epochs, Adam), ``b`` (3 epochs, SGD with momentum and a step scheduler, early
stopping after its second epoch, best weights loaded back at its end), ``c`` (2 epochs, a loader
shuffled by its own generator). Dropout and shuffling everywhere. `Stop` raised by `Stopper`
interrupts a run at a chosen point, the in-process stand-in for a kill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime import RunError
from stagegraph.runtime.callbacks import CheckpointCallback, EarlyStoppingCallback

GLOBAL_EPOCHS = 6  # a: 1-2, b: 3-4 (early stop), c: 5-6


class Stop(Exception):
    """The in-process stand-in for a kill."""


def _data(samples: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    return TensorDataset(x, (x[:, 0] > x[:, 1]).long())


def _loaders(private: bool = False) -> dict[str, Any]:
    def train() -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(5) if private else None
        return DataLoader(_data(24, 1), batch_size=8, shuffle=True, generator=generator)

    return {"train": train, "valid": lambda: DataLoader(_data(8, 2), batch_size=4)}


class Tracker(sg.Callback):
    """Experiment-scoped state: batches seen and a sum of losses, across stages."""

    order = sg.CallbackOrder.External
    scope = sg.CallbackScope.experiment

    def __init__(self) -> None:
        super().__init__()
        self.batches, self.total = 0, 0.0

    def on_batch_end(self, runner: Any) -> None:
        if runner.is_train_loader:
            self.batches += 1
            self.total += float(runner.batch_metrics["loss"].detach())

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches, self.total = int(state["batches"]), float(state["total"])


class Stopper(sg.Callback):
    """Raises `Stop` at ``("epoch", G)`` (start of global epoch G) or ``(event, stage)``."""

    scope = sg.CallbackScope.experiment

    def __init__(self, point: tuple[str, Any] | None) -> None:
        super().__init__()
        self.point = point

    def on_epoch_start(self, runner: Any) -> None:
        if self.point == ("epoch", runner.global_epoch):
            raise Stop(str(self.point))

    def on_stage_start(self, runner: Any) -> None:
        if self.point == ("on_stage_start", runner.stage_name):
            raise Stop(str(self.point))

    def on_stage_end(self, runner: Any) -> None:
        if self.point == ("on_stage_end", runner.stage_name):
            raise Stop(str(self.point))


class Noise(sg.Callback):
    """Draws from the global generators at stage end, after the last epoch's seeding."""

    scope = sg.CallbackScope.experiment

    def __init__(self) -> None:
        super().__init__()
        self.draws: list[float] = []

    def on_stage_end(self, runner: Any) -> None:
        self.draws.append(float(torch.rand(())))

    def state_dict(self) -> dict[str, Any]:
        return {"draws": list(self.draws)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.draws = list(state["draws"])


def build(point: tuple[str, Any] | None = None, **extra: sg.Callback) -> sg.Experiment:
    exp = sg.Experiment("small", seed=3, criterion=nn.CrossEntropyLoss,
                        model=lambda: nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3),
                                                    nn.Linear(8, 2)))
    exp.add_stage("a", num_epochs=2, loaders=_loaders(),
                  optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.01),
                  callbacks={"tracker": Tracker(), "stopper": Stopper(point), "noise": Noise(),
                             **extra})
    exp.add_stage("b", num_epochs=3, loaders=_loaders(),
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                  scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.5),
                  callbacks={"early_stopping": EarlyStoppingCallback(patience=1, min_delta=9.0),
                             "checkpoint": CheckpointCallback(load_best_on_stage_end=True)})
    exp.add_stage("c", num_epochs=2, loaders=_loaders(private=True),
                  optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.001))
    return exp


def plan(exp: sg.Experiment, logdir: Path, **options: Any) -> sg.ExecutionPlan:
    return sg.compile(exp, device="cpu", verbose=False, logdir=str(logdir), **options)


def run(logdir: Path, point: tuple[str, Any] | None = None, **runner: Any) -> Any:
    """Run the experiment into ``logdir``; stopped at ``point`` it returns ``None``."""
    try:
        return sg.Runner(plan(build(point), logdir), **runner).run()
    except RunError as err:
        assert isinstance(err.__cause__, Stop), err
        return None


def outcome(runner: Any) -> dict[str, Any]:
    """What must come out the same: weights, counters, metrics, callback state, logs."""
    callbacks = runner.callbacks
    logs = Path(runner.logdir) / "logs"
    return {
        "model": {k: v.clone() for k, v in runner.model.state_dict().items()},
        "counters": (runner.global_epoch, runner.global_batch_step, runner.global_sample_step),
        "epoch_metrics": dict(runner.epoch_metrics),
        "best": dict(runner.best_valid_metrics),
        "tracker": callbacks["tracker"].state_dict(),
        "noise": callbacks["noise"].state_dict(),
        "logs": {p.name: p.read_text() for p in sorted(logs.glob("*.csv"))},
    }


def assert_same(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    for key, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][key]), key
    for field in ("counters", "epoch_metrics", "best", "tracker", "noise", "logs"):
        assert actual[field] == expected[field], field
