"""No host synchronisation in a training batch with the default callbacks (docs/runtime.md).

On CPU a tensor subclass counts the calls that would make the host wait for a GPU (``item``,
``tolist``, ``bool(t)``, ``float(t)``, ``.cpu()``, a data-dependent shape...): the loaders yield
it and the model returns it, so every tensor computed in the batch carries it. The console's
redraw reads the running means by design and is exempted by name; everything else in
`Runner.run_batch` must count zero. Where CUDA exists, torch's own sync debug mode checks the same.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime.callbacks import (
    AccuracyCallback,
    ConsoleLogger,
    OptimizerCallback,
    TimerCallback,
)
from stagegraph.runtime.runner import Runner

#: Tensor methods and functions that read a value back to the host (or size an output by one).
SYNCS = frozenset({"item", "tolist", "__bool__", "__float__", "__int__", "__index__",
                   "__complex__", "__format__", "__repr__", "cpu", "numpy", "nonzero",
                   "masked_select", "unique", "equal", "allclose", "is_nonzero"})


class Counter:
    def __init__(self) -> None:
        self.active = False
        self.calls: list[str] = []  # counted in a batch
        self.exempt: list[str] = []  # in the console's redraw

    def record(self, name: str) -> None:
        if self.active:
            self.calls.append(name)
        elif self.exempting:
            self.exempt.append(name)

    exempting = False


COUNTER = Counter()


class Counting(torch.Tensor):
    """A tensor reporting each synchronising call on it (or on a tensor computed from it)."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in SYNCS:
            COUNTER.record(name)
        return super().__torch_function__(func, types, args, kwargs or {})


class Wrapped(nn.Module):
    """The model, returning ``Counting`` tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.inner(features).as_subclass(Counting)


def batches(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{"features": torch.randn(4, 3, generator=gen).as_subclass(Counting),
             "targets": torch.randint(0, 2, (4,), generator=gen).as_subclass(Counting)}
            for _ in range(n)]


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Count inside `Runner.run_batch`, except in the console's redraw (which syncs by design)."""
    run_batch, refresh = Runner.run_batch, ConsoleLogger._refresh

    def counted_batch(self: Runner, batch: Any) -> None:
        COUNTER.active = True
        try:
            run_batch(self, batch)
        finally:
            COUNTER.active = False

    def exempt_refresh(self: ConsoleLogger, *args: Any, **kwargs: Any) -> None:
        active = COUNTER.active
        COUNTER.active, COUNTER.exempting = False, active
        try:
            refresh(self, *args, **kwargs)
        finally:
            COUNTER.active, COUNTER.exempting = active, False

    monkeypatch.setattr(Runner, "run_batch", counted_batch)
    monkeypatch.setattr(ConsoleLogger, "_refresh", exempt_refresh)
    COUNTER.calls, COUNTER.exempt = [], []
    yield COUNTER
    COUNTER.calls, COUNTER.exempt = [], []


def experiment(optimizer: OptimizerCallback | None = None, refresh: float = 0.0) -> sg.Experiment:
    exp = sg.Experiment("sync", seed=0, model=Wrapped, criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                        handler=sg.SupervisedHandler("features", "targets", "logits"))
    callbacks: dict[str, sg.Callback] = {
        "accuracy": AccuracyCallback(), "timer": TimerCallback(),
        # log_interval=0: the console redraws after every batch, so the exemption is exercised
        "console": ConsoleLogger(metrics=("loss", "accuracy"), log_interval=refresh,
                                 file=io.StringIO())}
    if optimizer is not None:
        callbacks["optimizer"] = optimizer
    exp.add_stage("train", num_epochs=2, callbacks=callbacks,
                  loaders={"train": batches(5, 1), "valid": batches(3, 2)})
    return exp


def run(exp: sg.Experiment, logdir: Path) -> Runner:
    """With a logdir: the CSV logger and the checkpoints (defaults) take part too."""
    return sg.Runner(sg.compile(exp, device="cpu", verbose=False, logdir=str(logdir))).run()


@pytest.mark.parametrize("nonfinite", ["stop", "ignore"])
def test_a_training_batch_reads_nothing_back(tmp_path: Path, counting: Counter,
                                             nonfinite: str) -> None:
    runner = run(experiment(OptimizerCallback(nonfinite=nonfinite)), tmp_path)
    assert counting.calls == []
    assert counting.exempt  # the console redrew (and read the running means) every batch
    assert {"train_loss", "train_accuracy", "valid_loss", "valid_accuracy"} <= set(
        runner.epoch_metrics)
    assert any((tmp_path / "logs").iterdir()) and any((tmp_path / "checkpoints").iterdir())


def test_the_counter_sees_a_synchronising_policy(tmp_path: Path, counting: Counter) -> None:
    """``nonfinite="skip"`` decides per batch whether to step: the documented exception."""
    run(experiment(OptimizerCallback(nonfinite="skip")), tmp_path)
    assert counting.calls and set(counting.calls) <= {"item"}


def test_the_console_at_its_default_interval_does_not_redraw_per_batch(
        tmp_path: Path, counting: Counter) -> None:
    run(experiment(refresh=10.0), tmp_path)
    assert counting.calls == [] and counting.exempt == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_cuda_synchronisation_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """torch raises on any synchronising CUDA call made while the mode is "error"."""
    run_batch = Runner.run_batch

    def strict_batch(self: Runner, batch: Any) -> None:
        torch.cuda.set_sync_debug_mode("error")
        try:
            run_batch(self, batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(Runner, "run_batch", strict_batch)
    gen = torch.Generator().manual_seed(0)
    dataset = TensorDataset(torch.randn(20, 3, generator=gen), torch.randint(0, 2, (20,),
                                                                            generator=gen))
    # Pinned batches move with non_blocking=True; a blocking copy would synchronise.
    data = DataLoader(dataset, batch_size=4, pin_memory=True)
    exp = sg.Experiment("sync", seed=0, model=lambda: nn.Linear(3, 2),
                        criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                        handler=sg.SupervisedHandler("features", "targets", "logits"))
    exp.add_stage("train", num_epochs=2, callbacks={
        "accuracy": AccuracyCallback(),
        "console": ConsoleLogger(log_interval=3600.0, file=io.StringIO())},
        loaders={"train": data, "valid": data})
    runner = sg.Runner(sg.compile(exp, device="cuda", logdir=str(tmp_path))).run()
    assert runner.epoch_metrics["train_loss"] > 0
