"""``fast_path=`` per loader: the plan records each loader's setting; unknown names are SF531."""

from __future__ import annotations

from typing import Any

import pytest

import stagegraph as sg
from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.fast_path_options import fast_path_plan
from stagegraph.compiler.text import plan_to_text

LOADERS = {"train": [], "valid": [], "valid_extra": []}


def _plan(stage_value: Any, experiment_value: Any = True) -> sg.ExecutionPlan:
    exp = sg.Experiment("fp", model=object(), criterion=object(), optimizer=object(),
                        fast_path=experiment_value)
    exp.add_stage("train", loaders=LOADERS, fast_path=stage_value)
    return sg.compile(exp)


def _settings(plan: sg.ExecutionPlan) -> dict[str, bool]:
    return {lp.name: lp.fast_path for lp in plan.stages[0].loaders}


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_sets_every_loader(value: bool) -> None:
    plan = _plan(value)
    assert plan.stages[0].fast_path is value
    assert _settings(plan) == dict.fromkeys(LOADERS, value)


@pytest.mark.parametrize("default", [True, False])
def test_a_mapping_sets_the_loaders_it_names_the_others_take_the_experiments(
        default: bool) -> None:
    plan = _plan({"valid": not default}, experiment_value=default)
    assert plan.ok, plan.diagnostics
    assert plan.stages[0].fast_path is default
    assert _settings(plan) == {"train": default, "valid": not default, "valid_extra": default}


def test_the_text_form_names_the_loaders_that_differ_from_the_stage() -> None:
    text = plan_to_text(_plan({"valid": False}))
    assert "  loaders: train (train), valid (valid, fast_path=False), valid_extra (valid)" in text


def test_the_setting_is_in_the_json_plan_and_its_hash() -> None:
    on, off = _plan(True), _plan({"valid_extra": False})
    assert '"fast_path": false' in off.to_json()
    assert on.hash != off.hash
    assert sg.ExecutionPlan.model_validate_json(off.to_json()) == off


def test_an_unknown_loader_is_sf531_with_a_did_you_mean() -> None:
    plan = _plan({"valdi": False, "train": False})
    (found,) = plan.errors
    assert str(found) == (
        "error[SF531] stage 'train' > loader 'valdi' > param 'fast_path': fast_path names "
        "'valdi', which is not a loader of stage 'train'. Did you mean 'valid'?\n"
        "  hint: the stage's loaders are: 'train', 'valid', 'valid_extra'")
    assert _settings(plan) == {"train": False, "valid": True, "valid_extra": True}


@pytest.mark.parametrize(("value", "message"), [
    ("no", "invalid value 'no' for 'fast_path': it is not True, False or a mapping of loader "
           "names"),
    ({"valid": 0}, "invalid value 0 for fast_path['valid']: it is not True or False"),
])
def test_a_value_of_another_type_is_sf101(value: Any, message: str) -> None:
    (found,) = _plan(value).errors
    assert (found.code, found.message, found.location.param) == ("SF101", message, "fast_path")


def test_the_pass_reports_every_problem_and_keeps_the_good_entries() -> None:
    diags = Diagnostics()
    default, per_loader = fast_path_plan({"a": False, "b": "x", 3: True}, False, ("a", "c"),
                                         diags, stage="s")
    assert (default, per_loader) == (False, {"a": False, "c": False})
    assert [d.code for d in diags.items] == ["SF101", "SF531"]
    assert diags.items[1].location.loader is None  # 3 is not a name to locate


@pytest.mark.parametrize("value", ["no", {"valid": False}])
def test_the_experiments_fast_path_is_a_bool_reported_once(value: Any) -> None:
    exp = sg.Experiment("fp", model=object(), criterion=object(), optimizer=object(),
                        fast_path=value)
    exp.add_stage("train", loaders=LOADERS)
    exp.add_stage("tune", loaders=LOADERS, fast_path=False)
    plan = sg.compile(exp)
    (found,) = plan.errors
    assert (found.code, str(found.location)) == ("SF101", "param 'fast_path'")
    assert found.message == (f"invalid value {value!r} for the experiment's 'fast_path': it is "
                             "not True or False")
    assert [list(_settings(plan.model_copy(update={"stages": (s,)})).values())
            for s in plan.stages] == [[True] * 3, [False] * 3]
