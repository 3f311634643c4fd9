"""The verifier: corrupt a valid plan, assert the exact message."""

from __future__ import annotations

from conftest import LOADERS, Metric, experiment

import stagegraph as sg
from stagegraph.compiler.pipeline import passes
from stagegraph.compiler.plan import ExecutionPlan, StagePlan


def valid_plan() -> ExecutionPlan:
    exp = experiment("pretrain", "train")
    exp.stages[0].callbacks = {"acc": Metric()}
    plan = sg.compile(exp, logdir="runs")
    assert plan.ok and sg.verify(plan) == []
    return plan


def replace_stage(plan: ExecutionPlan, i: int, **update: object) -> ExecutionPlan:
    stages = list(plan.stages)
    stages[i] = stages[i].model_copy(update=update)
    return plan.model_copy(update={"stages": tuple(stages)})


def first(plan: ExecutionPlan) -> StagePlan:
    return plan.stages[0]


def test_swapped_callbacks_break_an_edge() -> None:
    plan = valid_plan()
    cbs = list(first(plan).callbacks)
    i, j = [k for k, cb in enumerate(cbs) if cb.name in ("criterion", "optimizer")]
    cbs[i], cbs[j] = cbs[j], cbs[i]
    bad = replace_stage(plan, 0, callbacks=tuple(cbs))
    assert "stage 'pretrain': 'criterion' must run before 'optimizer' ('criterion' writes " \
        "'metric.loss', which 'optimizer' reads)" in sg.verify(bad)


def test_dispatch_naming_unknown_callback() -> None:
    plan = valid_plan()
    dispatch = dict(first(plan).dispatch)
    dispatch["on_batch_end"] = (*dispatch["on_batch_end"], "ghost")
    assert sg.verify(replace_stage(plan, 0, dispatch=dispatch)) == [
        "stage 'pretrain': dispatch['on_batch_end'] names unknown callback 'ghost'"]


def test_dispatch_missing_a_handler() -> None:
    plan = valid_plan()
    dispatch = dict(first(plan).dispatch)
    dispatch["on_batch_end"] = tuple(n for n in dispatch["on_batch_end"] if n != "acc")
    assert sg.verify(replace_stage(plan, 0, dispatch=dispatch)) == [
        "stage 'pretrain': 'acc' handles 'on_batch_end' but is not dispatched"]


def test_stage_order_and_index() -> None:
    plan = valid_plan()
    swapped = plan.model_copy(update={"stages": plan.stages[::-1]})
    assert sg.verify(swapped) == [
        "stage 'train' has index 1, expected 0",
        "stage 'pretrain' has index 0, expected 1",
        "stage 'pretrain' must run before 'train'",
    ]


def test_verifier_holds_after_every_pass() -> None:
    from stagegraph.compiler.diagnostics import Diagnostics
    from stagegraph.compiler.schema import schema

    exp = experiment("pretrain", "train", "finetune")
    diags = Diagnostics()
    plan = schema(exp, diags)
    for name, run in passes():
        plan = run(plan, diags)
        problems = [p for p in sg.verify(plan) if "dispatch" not in p and "index" not in p]
        assert problems == [], name
    assert sg.verify(plan) == []


def test_loaders_stay_unique() -> None:
    plan = valid_plan()
    loaders = (*first(plan).loaders, first(plan).loaders[0])
    assert sg.verify(replace_stage(plan, 0, loaders=loaders)) == [
        "stage 'pretrain': loader names are not unique: ['train', 'valid', 'train']"]


_ = LOADERS
