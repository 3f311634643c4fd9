"""Lint levels (compiler/levels.py and the ``lints=`` settings the schema checks): callback over
stage over experiment, ``allow`` drops, a raised level counts, settings are in the plan and its
hash, and a bad setting is SF111."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from conftest import LOADERS, Plain, experiment

import stagegraph as sg


class ReadsMask(sg.Callback):
    """Reads a batch key the stage does not declare: SF502 (warning) at this callback."""

    reads = ("batch.mask",)

    def on_batch_end(self, runner: Any) -> None:
        pass


class Typo(sg.Callback):
    def on_epoch_ends(self, runner: Any) -> None:  # SF107, an error by default
        pass


def build(callback: sg.Callback | None = None, *, stage_lints: dict[str, str] | None = None,
          lints: dict[str, str] | None = None, loaders: dict[str, Any] | None = None
          ) -> sg.Experiment:
    exp = sg.Experiment("levels", seed=1, model=object(), criterion=object(),
                        optimizer=object(), lints=lints)
    exp.add_stage("train", loaders=loaders or dict(LOADERS), lints=stage_lints,
                  callbacks={"cb": callback if callback is not None else ReadsMask()})
    return exp


def found(plan: sg.ExecutionPlan, code: str) -> list[str]:
    """The severities ``code`` is reported at."""
    return [d.severity.value for d in plan.diagnostics if d.code == code]


def test_defaults_apply_without_settings() -> None:
    assert found(sg.compile(build()), "SF502") == ["warning"]
    assert found(sg.compile(build(Typo())), "SF107") == ["error"]


def test_callback_over_stage_over_experiment() -> None:
    everywhere = {"lints": {"SF502": "error"}}
    assert found(sg.compile(build(**everywhere)), "SF502") == ["error"]
    stage = {"stage_lints": {"SF502": "info"}, **everywhere}
    assert found(sg.compile(build(**stage)), "SF502") == ["info"]
    callback = ReadsMask(lints={"SF502": "warning"})
    assert found(sg.compile(build(callback, **stage)), "SF502") == ["warning"]


def test_allow_drops_the_diagnostic() -> None:
    plan = sg.compile(build(lints={"SF502": "allow"}))
    assert found(plan, "SF502") == []
    assert plan.diagnostics == ()


def test_a_more_specific_setting_can_bring_back_an_allowed_code() -> None:
    plan = sg.compile(build(ReadsMask(lints={"SF502": "warning"}), lints={"SF502": "allow"}))
    assert found(plan, "SF502") == ["warning"]


def test_raising_a_warning_to_error_makes_the_plan_fail() -> None:
    loaders = {**LOADERS, "holdout": object()}  # SF506, a warning, located at the stage
    assert sg.compile(build(ReadsMask(reads=()), loaders=loaders)).ok
    plan = sg.compile(build(ReadsMask(reads=()), loaders=loaders, stage_lints={"SF506": "error"}))
    assert found(plan, "SF506") == ["error"]
    assert not plan.ok


def test_lowering_an_error_lets_the_plan_run() -> None:
    plan = sg.compile(build(Typo(lints={"SF107": "warning"})))
    assert found(plan, "SF107") == ["warning"]
    assert plan.ok


def test_a_callback_setting_only_covers_diagnostics_located_at_it() -> None:
    loaders = {**LOADERS, "holdout": object()}  # SF506 is located at the stage's loader
    plan = sg.compile(build(ReadsMask(lints={"SF506": "allow"}), loaders=loaders))
    assert found(plan, "SF506") == ["warning"]


def test_a_stage_setting_only_covers_its_stage() -> None:
    exp = build(Typo(), stage_lints={"SF107": "allow"})
    exp.add_stage("finetune", loaders=dict(LOADERS), callbacks={"cb": Typo()})
    plan = sg.compile(exp)
    assert [(d.location.stage, d.severity.value) for d in plan.diagnostics
            if d.code == "SF107"] == [("finetune", "error")]


def test_a_class_level_setting_applies_to_every_instance() -> None:
    class TolerantTypo(Typo):
        lints: ClassVar[dict[str, str]] = {"SF107": "allow"}

    assert found(sg.compile(build(TolerantTypo())), "SF107") == []
    assert found(sg.compile(build(TolerantTypo(lints={}))), "SF107") == ["error"]


def test_settings_are_recorded_in_the_plan_and_its_hash() -> None:
    plain = sg.compile(build())
    plan = sg.compile(build(ReadsMask(lints={"SF516": "warning"}),
                            stage_lints={"SF506": "error"}, lints={"SF301": "allow"}))
    assert plan.lints == {"SF301": "allow"}
    assert plan.stage("train").lints == {"SF506": "error"}
    assert plan.stage("train").callback("cb").lints == {"SF516": "warning"}
    assert plan.diagnostics == plain.diagnostics  # none of these codes is reported here
    assert plan.hash != plain.hash
    back = sg.ExecutionPlan.model_validate_json(plan.to_json())
    assert back.lints == plan.lints and back.hash == plan.hash


def test_callback_settings_migrate_with_the_callback() -> None:
    class Tracker(Typo):
        scope = sg.CallbackScope.experiment

    exp = experiment("pretrain")
    exp.stages[0].callbacks = {"tracker": Tracker(lints={"SF107": "warning"})}
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"plain": Plain()})
    plan = sg.compile(exp)
    assert plan.stage("train").callback("tracker").lints == {"SF107": "warning"}
    assert set(found(plan, "SF107")) == {"warning"}


# --- SF111: a setting the compiler cannot use -------------------------------------------------
@pytest.mark.parametrize(("lints", "message"), [
    ({"SF5O2": "allow"}, "lints names an unknown code 'SF5O2'. Did you mean 'SF502'?"),
    ({"SF502": "warn"}, "lints gives SF502 the unknown level 'warn'. Did you mean 'warning'?"),
    ({"SF402": "allow"}, "SF402 is fixed at 'error' and cannot be set to 'allow': the plan "
                         "could not run at all"),
    ({"SF604": "error"}, "SF604 is fixed at 'warning' and cannot be set to 'error': it is "
                         "reported when a run resumes"),
    (["SF502"], "lints must be a mapping of code to level, not ['SF502']"),
])
def test_bad_settings_are_sf111(lints: Any, message: str) -> None:
    plan = sg.compile(build(lints=lints))
    (diag,) = [d for d in plan.diagnostics if d.code == "SF111"]
    assert diag.severity is sg.Severity.error and not plan.ok
    assert diag.message.startswith(message)
    assert diag.location.param == "lints" and diag.location.stage is None


def test_sf111_is_located_at_the_stage_or_callback_that_has_the_setting() -> None:
    plan = sg.compile(build(ReadsMask(lints={"SF999": "allow"}), stage_lints={"SF5O6": "off"}))
    where = {(d.location.stage, d.location.callback) for d in plan.diagnostics
             if d.code == "SF111"}
    assert where == {("train", None), ("train", "cb")}


def test_a_bad_setting_is_left_out_and_the_good_ones_apply() -> None:
    plan = sg.compile(build(lints={"SF502": "allow", "SF402": "warning"}))
    assert plan.lints == {"SF502": "allow"}
    assert found(plan, "SF502") == [] and found(plan, "SF111") == ["error"]


def test_a_fixed_rule_may_be_named_at_its_own_level() -> None:
    plan = sg.compile(build(lints={"SF402": "error"}))
    assert found(plan, "SF111") == [] and plan.lints == {"SF402": "error"}


def test_sf111_cannot_be_allowed() -> None:
    plan = sg.compile(build(lints={"SF111": "allow", "SF000": "allow"}))
    assert found(plan, "SF111") == ["error", "error"]
