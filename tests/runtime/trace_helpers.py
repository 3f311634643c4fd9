"""Helpers for the runtime tests: tiny data, a recording callback and stand-in defaults.

The stand-ins take the place of the built-in metric-aggregation and validation callbacks (a
callback of the same ``kind`` replaces the compiler's default), so these tests exercise the
runner alone and name only the callbacks whose events they record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.graph.enums import EVENT_METHODS


def loader(samples: int, batch_size: int = 2, *, shuffle: bool = False, seed: int = 0
           ) -> DataLoader:
    """``samples`` rows of 3 features and a binary target, in batches of ``batch_size``."""
    gen = torch.Generator().manual_seed(seed + samples)
    features = torch.randn(samples, 3, generator=gen)
    targets = torch.randint(0, 2, (samples,), generator=gen)
    return DataLoader(TensorDataset(features, targets), batch_size=batch_size, shuffle=shuffle)


def loaders(train: int = 4, valid: int = 2, batch_size: int = 2) -> dict[str, DataLoader]:
    return {"train": loader(train, batch_size), "valid": loader(valid, batch_size)}


def describe(event: str, runner: Any) -> str:
    """One trace line: the event and the position it fired at."""
    short = event.removeprefix("on_")
    if short.startswith("experiment"):
        return short
    if short.startswith("stage") or short == "exception":
        return f"{short} {runner.stage_name}"
    where = f"{short} {runner.stage_name} {runner.epoch}"
    if short.startswith("epoch"):
        return where
    if short.startswith("loader"):
        return f"{where} {runner.loader_name}"
    return f"{where} {runner.loader_name} {runner.loader_batch_step}"


class Recorder(sg.Callback):
    """Appends one line per event to ``log`` (every event method is overridden below)."""

    def __init__(self, log: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[str] = log if log is not None else []


def _recording(event: str) -> Callable[[Recorder, Any], None]:
    def hook(self: Recorder, runner: Any) -> None:
        self.log.append(describe(event, runner))

    hook.__name__ = hook.__qualname__ = event
    return hook


for _event in EVENT_METHODS:
    setattr(Recorder, _event, _recording(_event))


class Hook(sg.Callback):
    """Calls ``fn(runner)`` on one event; ``Hook("on_batch_end", fn)``."""

    def __init__(self, event: str, fn: Callable[[Any], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        setattr(self, event, fn)


#: Lint levels for experiments that exercise the runner's loop and train nothing on purpose: a
#: training stage without an optimizer is otherwise an error (SF512).
NO_OPTIMIZER = {"SF512": "allow"}


class AggregationStandIn(sg.Callback):
    """Replaces the default metric aggregation; declares ``metric.loss`` for ``main_metric``."""

    kind = "metric_aggregation"
    writes = ("metric.loss",)


class ValidationStandIn(sg.Callback):
    kind = "validation"
    writes = ("valid.metrics", "valid.is_best", "valid.best_metrics")


def stand_ins() -> dict[str, sg.Callback]:
    return {"aggregation": AggregationStandIn(), "validation": ValidationStandIn()}


def callbacks(**named: sg.Callback) -> dict[str, sg.Callback]:
    """The stage's callbacks: ``named`` first, then the stand-ins for the defaults."""
    return {**named, **stand_ins()}


def tiny_model() -> nn.Module:
    return nn.Linear(3, 2)


def compile_cpu(exp: sg.Experiment, **kwargs: Any) -> sg.ExecutionPlan:
    plan = sg.compile(exp, device="cpu", verbose=False, **kwargs)
    assert plan.ok, "\n".join(map(str, plan.errors))
    return plan


def run_cpu(exp: sg.Experiment, **kwargs: Any) -> Any:
    return sg.Runner(compile_cpu(exp), **kwargs).run()
