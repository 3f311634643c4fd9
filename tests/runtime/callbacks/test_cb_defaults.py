"""The compiler's defaults table and the runtime classes it names stay in step."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import stagegraph as sg
from stagegraph.compiler.defaults import DEFAULTS, RUNTIME, Default
from stagegraph.compiler.metrics import DERIVES, substitute
from stagegraph.compiler.plan import CallbackPlan, HandlerPlan, StagePlan
from stagegraph.graph.callback import declared, overridden_events

STAGE = StagePlan(name="train", index=0, handler=HandlerPlan(
    type="SupervisedHandler('features' -> 'logits')",
    reads=("batch.features", "batch.targets"), writes=("output.logits",)))


#: Parameters the defaults do not pass but the classes take, that change declarations.
OPTIONAL = {"optimizer": {"optimizer_key": "adam"}, "scheduler": {"scheduler_key": "cosine"},
            "csv_logger": {"folder": "csv"}, "checkpoint": {"prefix": "ema_"}}


def _class(default: Default) -> type:
    return getattr(importlib.import_module(RUNTIME), default.cls)


def _assert_declares(callback: sg.Callback, default: Default, params: dict) -> None:
    assert tuple(declared(callback, "reads")) == default.reads(params)
    assert tuple(declared(callback, "writes")) == default.writes(params)
    assert tuple(declared(callback, "claims")) == default.claims(params)
    assert tuple(declared(callback, "needs")) == default.needs
    assert declared(callback, "watch") == default.watch
    assert declared(callback, "watch_minimize") is None


@pytest.mark.parametrize("default", DEFAULTS, ids=lambda d: d.name)
def test_default_matches_its_class(default: Default) -> None:
    params = default.params(STAGE)
    callback = _class(default)(**params)
    assert isinstance(callback, sg.Callback)
    assert declared(callback, "kind") == default.name
    assert declared(callback, "order") == default.order
    assert declared(callback, "node") == default.node
    _assert_declares(callback, default, params)
    assert overridden_events(callback) == default.events


@pytest.mark.parametrize("default", DEFAULTS, ids=lambda d: d.name)
def test_default_class_follows_its_params(default: Default) -> None:
    """Non-default params change declarations the same way in the table and in the class."""
    params = {k: (f"my_{v}" if k.endswith("_key") else v)
              for k, v in default.params(STAGE).items()}
    params.update(OPTIONAL.get(default.name, {}))
    callback = _class(default)(**params)
    _assert_declares(callback, default, params)


def test_every_default_of_a_compiled_plan_builds(tmp_path: Path) -> None:
    exp = sg.Experiment("defaults", model=lambda: nn.Linear(2, 2),
                        criterion=nn.CrossEntropyLoss(),
                        optimizer=lambda m: None, scheduler=lambda o: None)
    exp.add_stage("train", loaders={"train": [], "valid": []})
    plan = sg.compile(exp, logdir=str(tmp_path), device="cpu")
    defaults = [cb for cb in plan.stages[0].callbacks if cb.origin == "default"]
    assert {cb.name for cb in defaults} == {d.name for d in DEFAULTS}
    stage = plan.stages[0]
    for cb in defaults:
        module, _, name = (cb.target or "").partition(":")
        instance = getattr(importlib.import_module(module), name)(**cb.params)
        assert overridden_events(instance) == cb.events
        assert (declared(instance, "order"), declared(instance, "node")) == (cb.order, cb.node)
        assert tuple(substitute(k, stage) for k in declared(instance, "reads")) == cb.reads
        assert _underived(cb, [substitute(k, stage) for k in declared(instance, "writes")]) == \
            _underived(cb, cb.writes)
        assert tuple(declared(instance, "claims")) == cb.claims
        assert tuple(declared(instance, "needs")) == cb.needs
        watch = declared(instance, "watch")
        assert (None if watch is None else substitute(watch, stage)) == cb.watch


def _underived(cb: CallbackPlan, writes: Any) -> tuple[str, ...]:
    """Writes without those the metric flow derives for ``cb``'s kind (a wildcard in the class,
    concrete keys in the plan)."""
    derived = DERIVES.get(cb.kind or "", ())
    return tuple(k for k in writes if k.split(".", 1)[0] not in derived)


def test_a_user_instance_of_a_builtin_replaces_the_default(tmp_path: Path) -> None:
    from stagegraph.runtime.callbacks import CheckpointCallback, OptimizerCallback

    exp = sg.Experiment("replace", model=lambda: nn.Linear(2, 2),
                        criterion=nn.CrossEntropyLoss(), optimizer=lambda m: None)
    exp.add_stage("train", loaders={"train": [], "valid": []}, callbacks={
        "opt": OptimizerCallback(accumulation_steps=4),
        "ckpt": CheckpointCallback(save_n_best=3)})
    plan = sg.compile(exp, logdir=str(tmp_path), device="cpu")
    names = [cb.name for cb in plan.stages[0].callbacks]
    assert "opt" in names and "optimizer" not in names
    assert "ckpt" in names and "checkpoint" not in names
