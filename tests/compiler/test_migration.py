"""Pass 3, migration: experiment-scoped callbacks travel along stage edges."""

from __future__ import annotations

from typing import Any

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
    (diag,) = [d for d in plan.diagnostics if d.code == "SF303"]  # configured the same
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


class Accumulating(sg.Callback):
    """An experiment-scoped callback with a setting, like an optimizer's accumulation steps."""

    scope = sg.CallbackScope.experiment

    def __init__(self, steps: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps = steps
        self._pending = 0  # private state does not count as configuration

    def on_batch_end(self, runner: Any) -> None:
        pass


def shadowed(declared: sg.Callback, **finetune: Any) -> sg.Experiment:
    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS), callbacks={"acc": Accumulating(steps=4)})
    exp.add_stage("finetune", loaders=dict(LOADERS), callbacks={"acc": declared}, **finetune)
    return exp


def test_migrating_instance_shadowing_a_differently_configured_one_is_an_error() -> None:
    plan = sg.compile(shadowed(Accumulating(steps=2)))
    (diag,) = plan.errors
    assert (diag.code, str(diag.location)) == ("SF301", "stage 'finetune' > callback 'acc'")
    assert diag.message.endswith("so the configuration declared here is ignored: steps=4 "
                                 "migrating, 2 here")
    assert "rename" not in diag.hint  # two instances under two names would both run
    assert "migrate_from_previous_stage=False on stage 'finetune'" in diag.hint
    assert "scope='stage' in stage 'pretrain'" in diag.hint
    assert "remove 'acc' from this stage's callbacks" in diag.hint
    assert "lints={'SF301': 'allow'}" in diag.hint
    assert plan.stage("finetune").callback("acc").origin == "migrated"  # the seed's behaviour


def test_every_way_out_of_sf301_validates_clean() -> None:
    off = shadowed(Accumulating(steps=2), migrate_from_previous_stage=False)
    staged = shadowed(Accumulating(steps=2))
    staged.stages[0].callbacks = {"acc": Accumulating(steps=4, scope="stage")}
    removed = shadowed(Accumulating(steps=2))
    removed.stages[1].callbacks = {}
    allowed = shadowed(Accumulating(steps=2), lints={"SF301": "allow"})
    for exp in (off, staged, removed, allowed):
        plan = sg.compile(exp)
        assert plan.ok and not plan.diagnostics, plan.diagnostics
    assert sg.compile(off).stage("finetune").callback("acc").origin == "declared"
    assert sg.compile(allowed).stage("finetune").callback("acc").origin == "migrated"


def test_a_different_class_under_the_same_name_differs() -> None:
    (diag,) = sg.compile(shadowed(Tracker())).errors
    assert diag.code == "SF301" and diag.message.endswith(
        "the migrating one is of class Accumulating, the one declared here of class Tracker")


def test_values_that_cannot_be_compared_count_as_different() -> None:
    class Grid:
        def __eq__(self, other: object) -> bool:
            raise ValueError("ambiguous truth value")

    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS), callbacks={"acc": Accumulating(steps=4)})
    exp.stages[0].callbacks["acc"].steps = Grid()  # type: ignore[assignment]
    later = Accumulating()
    later.steps = Grid()  # type: ignore[assignment]
    exp.add_stage("finetune", loaders=dict(LOADERS), callbacks={"acc": later})
    assert codes(sg.compile(exp)) == ["SF301"]


def test_identically_configured_shadow_is_a_warning() -> None:
    plan = sg.compile(shadowed(Accumulating(steps=4)))
    (diag,) = plan.diagnostics
    assert (diag.code, diag.severity) == ("SF303", sg.Severity.warning)
    assert plan.ok
    assert "remove 'acc' from this stage's callbacks" in diag.hint


def test_differs_compares_public_attributes() -> None:
    from stagegraph.compiler.migration import differs

    assert differs(Accumulating(steps=4), Accumulating(steps=4)) is None
    assert differs(Accumulating(steps=4), Accumulating(steps=2)) == "steps=4 migrating, 2 here"
    extra = Accumulating(steps=4)
    extra.note = "x"  # type: ignore[attr-defined]
    assert differs(Accumulating(steps=4), extra) == "note=unset migrating, 'x' here"


def test_a_migrating_instance_takes_the_slot_its_namesake_sorted_into() -> None:
    """The seed sorts a stage's own callbacks by order, then puts a migrating instance in the slot
    of the declaration it replaces; equal-order neighbours keep that slot order."""

    class C(sg.Callback):
        def on_epoch_end(self, runner: object) -> None: ...

    ex = sg.CallbackScope.experiment
    exp = sg.Experiment("slots", model=object(), criterion=object(), optimizer=object())
    exp.add_stage("one", loaders={"train": [], "valid": []},
                  callbacks={"exp": C(order=10, scope=ex), "exp2": C(order=10, scope=ex),
                             "exp_ext": C(order=10, scope=ex)})
    exp.add_stage("two", loaders={"train": [], "valid": []}, lints={"SF301": "allow"},
                  callbacks={"stage": C(order=10), "exp_ext": C(order=0), "tie": C(order=10)})
    plan = sg.compile(exp, verbose=False)
    two = plan.stage("two")
    assert [cb.name for cb in two.callbacks if cb.origin != "default"] == [
        "exp_ext", "stage", "tie", "exp", "exp2"]
    assert two.callback("exp_ext").shadowed_order == 0
    assert two.callback("exp").shadowed_order is None
    text = str(plan.explain("two", "exp_ext", "stage"))
    assert "sits in the slot of the 'exp_ext' declared in stage 'two'" in text
    assert "Internal (0)" in text


def test_lints_on_the_declared_instance_apply_to_its_shadowing_diagnostic() -> None:
    exp = experiment()
    exp.add_stage("pretrain", loaders=LOADERS, callbacks={"tracker": Tracker(order=1)})
    exp.add_stage("finetune", loaders=LOADERS,
                  callbacks={"tracker": Tracker(order=2, lints={"SF301": "allow"})})
    plan = sg.compile(exp)
    assert "SF301" not in codes(plan)


def test_lints_are_not_configuration() -> None:
    exp = experiment()
    exp.add_stage("pretrain", loaders=LOADERS, callbacks={"tracker": Tracker()})
    exp.add_stage("finetune", loaders=LOADERS,
                  callbacks={"tracker": Tracker(lints={"SF303": "warning"})})
    assert "SF303" in codes(sg.compile(exp)) and "SF301" not in codes(sg.compile(exp))
