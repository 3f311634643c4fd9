"""Pass 3, migration: experiment-scoped callbacks travel along stage edges."""

from __future__ import annotations

from conftest import LOADERS, Metric, Plain, Tracker, codes, experiment

import stagegraph as sg


def test_experiment_scoped_callback_migrates_after_own_callbacks() -> None:
    tracker = Tracker()
    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS), callbacks={"tracker": tracker})
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"extra": Plain()})
    plan = sg.compile(exp, verbose=False)
    train = plan.stage("train")
    names = [cb.name for cb in train.callbacks]
    moved = train.callback("tracker")
    assert moved.origin == "migrated"
    assert moved.source_stage == "pretrain"
    assert moved.declared_in == "pretrain"
    # Both Internal (0): the migrated one takes its tie-break place after the stage's own.
    assert names.index("extra") < names.index("tracker")
    assert [(m.source, m.target, m.callbacks) for m in train.migrations] == [
        ("pretrain", "train", ("tracker",))]


def test_migration_chains_and_can_be_switched_off() -> None:
    exp = experiment()
    exp.add_stage("a", loaders=dict(LOADERS), callbacks={"tracker": Tracker()})
    exp.add_stage("b", loaders=dict(LOADERS))
    exp.add_stage("c", loaders=dict(LOADERS))
    exp.add_stage("d", loaders=dict(LOADERS), migrate_from_previous_stage=False)
    plan = sg.compile(exp)
    assert plan.stage("c").callback("tracker").source_stage == "b"
    assert plan.stage("c").callback("tracker").declared_in == "a"
    assert "tracker" not in [cb.name for cb in plan.stage("d").callbacks]


def test_stage_scoped_callbacks_do_not_migrate() -> None:
    exp = experiment()
    exp.add_stage("a", loaders=dict(LOADERS), callbacks={"acc": Metric()})
    exp.add_stage("b", loaders=dict(LOADERS))
    plan = sg.compile(exp)
    assert "acc" not in [cb.name for cb in plan.stage("b").callbacks]


def test_declared_callback_shadowed_by_migrating_one_warns_and_keeps_place() -> None:
    exp = experiment()
    exp.add_stage("a", loaders=dict(LOADERS), callbacks={"tracker": Tracker()})
    exp.add_stage("b", loaders=dict(LOADERS), callbacks={"tracker": Tracker(), "z": Plain()})
    plan = sg.compile(exp)
    (diag,) = [d for d in plan.diagnostics if d.code == "SF301"]
    assert diag.severity is sg.Severity.warning
    assert str(diag.location) == "stage 'b' > callback 'tracker'"
    tracker = plan.stage("b").callback("tracker")
    assert tracker.origin == "migrated"
    names = [cb.name for cb in plan.stage("b").callbacks]
    assert names.index("tracker") < names.index("z")


def test_same_instance_declared_again_is_not_a_conflict() -> None:
    tracker = Tracker()
    exp = experiment()
    exp.add_stage("a", loaders=dict(LOADERS), callbacks={"tracker": tracker})
    exp.add_stage("b", loaders=dict(LOADERS), callbacks={"tracker": tracker})
    assert "SF301" not in codes(sg.compile(exp))


def test_two_predecessors_with_different_instances_conflict() -> None:
    exp = experiment()
    exp.add_stage("a", after=[], loaders=dict(LOADERS), callbacks={"tracker": Tracker()})
    exp.add_stage("b", after=[], loaders=dict(LOADERS), callbacks={"tracker": Tracker()})
    exp.add_stage("c", after=["a", "b"], loaders=dict(LOADERS))
    plan = sg.compile(exp)
    (diag,) = [d for d in plan.diagnostics if d.code == "SF302"]
    assert str(diag.location) == "stage 'c' > callback 'tracker'"


def test_diamond_hands_over_one_instance_once() -> None:
    exp = experiment()
    exp.add_stage("root", loaders=dict(LOADERS), callbacks={"tracker": Tracker()})
    exp.add_stage("left", after=["root"], loaders=dict(LOADERS))
    exp.add_stage("right", after=["root"], loaders=dict(LOADERS))
    exp.add_stage("join", after=["left", "right"], loaders=dict(LOADERS))
    plan = sg.compile(exp)
    assert plan.ok, plan.diagnostics
    join = plan.stage("join")
    assert [cb.name for cb in join.callbacks].count("tracker") == 1
