"""Pass 2, stage graph: run order, unknown stages, cycles."""

from __future__ import annotations

from conftest import LOADERS, codes, experiment

import stagegraph as sg


def test_linear_default_edges() -> None:
    plan = sg.compile(experiment("pretrain", "train", "finetune"))
    assert [s.name for s in plan.stages] == ["pretrain", "train", "finetune"]
    assert [(e.source, e.target) for e in plan.stage_edges] == [
        ("pretrain", "train"), ("train", "finetune")]
    assert [s.index for s in plan.stages] == [0, 1, 2]


def test_dag_order_breaks_ties_by_declaration() -> None:
    exp = experiment()
    exp.add_stage("finetune", after=["b", "a"], loaders=dict(LOADERS))
    exp.add_stage("b", after=[], loaders=dict(LOADERS))
    exp.add_stage("a", after=[], loaders=dict(LOADERS))
    plan = sg.compile(exp)
    assert plan.ok, plan.diagnostics
    assert [s.name for s in plan.stages] == ["b", "a", "finetune"]


def test_unknown_stage_with_did_you_mean() -> None:
    exp = experiment("pretrain")
    exp.add_stage("train", after=["pretrian"], loaders=dict(LOADERS))
    (diag,) = [d for d in sg.compile(exp).diagnostics if d.code == "SF202"]
    assert "Did you mean 'pretrain'?" in diag.message
    assert str(diag.location) == "stage 'train' > param 'after'"


def test_stage_cycle_is_reported_with_the_path() -> None:
    exp = experiment()
    exp.add_stage("a", after=["c"], loaders=dict(LOADERS))
    exp.add_stage("b", after=["a"], loaders=dict(LOADERS))
    exp.add_stage("c", after=["b"], loaders=dict(LOADERS))
    plan = sg.compile(exp)
    assert "SF201" in codes(plan)
    (diag,) = [d for d in plan.diagnostics if d.code == "SF201"]
    assert "a -> b -> c -> a" in diag.message
    assert [s.name for s in plan.stages] == ["a", "b", "c"]
    assert sg.verify(plan) == []
