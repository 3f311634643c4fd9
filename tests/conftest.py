"""Shared test helpers: small experiments that compile without torch."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

import stagegraph as sg


class Metric(sg.Callback):
    """A metric callback: reads the model output and targets, writes ``metric.<name>``."""

    order = sg.CallbackOrder.Metric

    def __init__(self, name: str = "accuracy", **kwargs: Any) -> None:
        kwargs.setdefault("reads", ("output.logits", "batch.targets"))
        kwargs.setdefault("writes", (f"metric.{name}",))
        super().__init__(**kwargs)

    def on_batch_end(self, runner: Any) -> None:
        pass


class Plain(sg.Callback):
    """A callback that declares nothing unless told to, and handles one event."""

    def on_epoch_end(self, runner: Any) -> None:
        pass


class Tracker(sg.Callback):
    """An experiment-scoped callback (migrates to later stages)."""

    scope = sg.CallbackScope.experiment

    def on_stage_start(self, runner: Any) -> None:
        pass


class Opt(sg.Callback):
    """Steps the stage's optimizer (kind 'optimizer', so it replaces the default)."""

    order = sg.CallbackOrder.Optimizer
    kind = "optimizer"
    reads = ("metric.loss",)
    claims = ("optimizer:",)
    needs = ("optimizer",)

    def on_batch_end(self, runner: Any) -> None:
        pass


def model_factory() -> Any:
    raise AssertionError("the compiler must never call a factory")


LOADERS = {"train": object(), "valid": object()}


def experiment(*stages: str, **stage_kwargs: Any) -> sg.Experiment:
    """An experiment with a model and a criterion and the given linear stages."""
    exp = sg.Experiment("test", seed=1, model=model_factory, criterion=model_factory,
                        optimizer=model_factory)
    for name in stages:
        exp.add_stage(name, loaders=dict(LOADERS), **stage_kwargs)
    return exp


def codes(plan: sg.ExecutionPlan) -> list[str]:
    return [d.code for d in plan.diagnostics]


@pytest.fixture
def linear() -> sg.Experiment:
    return experiment("pretrain", "train", "finetune")


@pytest.fixture(autouse=True)
def _no_outside_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking server set in the environment (common on ML teams' machines) is not the tests'
    store: MLflowLogger would log there, and the tests read the local one under the logdir."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True)
def _forget_temporary_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Modules a test imported from its ``tmp_path`` (a ``my_callbacks.py`` a CLI call ran
    in-process) leave with it: another test writes a file of the same name and must not get this
    one from ``sys.modules``, nor find the old file through a folder left on ``sys.path``. Only
    files under pytest's own temporary folder count: a checkout (and its virtualenv, torch
    included) may itself live under /tmp."""
    before, path = set(sys.modules), list(sys.path)
    yield
    sys.path[:] = path
    temporary = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - before:
        origin = str(getattr(sys.modules.get(name), "__file__", None) or "")
        if origin.startswith(temporary):
            del sys.modules[name]
