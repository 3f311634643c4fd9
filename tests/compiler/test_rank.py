"""Pass 6, rank filter: single runs all, master drops worker callbacks, worker drops master."""

from __future__ import annotations

from conftest import LOADERS, Plain, experiment

import stagegraph as sg


def build() -> sg.Experiment:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "on_master": Plain(node="master"),
        "on_worker": Plain(node="worker", after=["on_master"]),
        "everywhere": Plain(),
    })
    return exp


def names(plan: sg.ExecutionPlan) -> list[str]:
    return [cb.name for cb in plan.stage("train").callbacks]


def test_single_process_runs_everything() -> None:
    assert {"on_master", "on_worker", "everywhere"} <= set(names(sg.compile(build())))


def test_master_and_worker_plans() -> None:
    master = sg.compile(build(), rank="master", logdir="runs")
    worker = sg.compile(build(), rank="worker", logdir="runs")
    assert master.ok and worker.ok, (master.diagnostics, worker.diagnostics)
    assert "on_worker" not in names(master) and "on_master" in names(master)
    assert "on_master" not in names(worker) and "on_worker" in names(worker)
    # Built-in loggers and checkpoints are master-only.
    assert "checkpoint" in names(master) and "checkpoint" not in names(worker)
    # The same relative order on every rank, and no edge to a dropped callback.
    both = [n for n in names(master) if n in names(worker)]
    assert both == [n for n in names(worker) if n in names(master)]
    assert all(e.source in names(worker) for e in worker.stage("train").edges)
    assert sg.verify(master) == [] and sg.verify(worker) == []
