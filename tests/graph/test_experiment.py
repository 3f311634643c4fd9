"""Authoring: stages keep raw values; the default edge is the previous stage."""

from __future__ import annotations

from typing import Any

import pytest

import stagegraph as sg
from stagegraph.graph.experiment import STAGE_DEFAULTS


def test_add_stage_defaults_and_edges() -> None:
    exp = sg.Experiment("x", model="m", criterion="c")
    exp.add_stage("a", loaders={"train": []})
    exp.add_stage("b", after="a", num_epochs=3)
    exp.add_stage("c", after=[])
    a, b, c = exp.stages
    assert a.after == [] and b.after == ["a"] and c.after == []
    assert a.params == STAGE_DEFAULTS
    assert b.params["num_epochs"] == 3
    assert exp.component(b, "model") == "m"
    assert exp.stage("b") is b
    with pytest.raises(KeyError, match="has no stage 'z'"):
        exp.stage("z")


def test_stage_components_override_experiment() -> None:
    exp = sg.Experiment("x", optimizer="adam")
    exp.add_stage("a", optimizer="sgd", handler="h")
    assert exp.component(exp.stages[0], "optimizer") == "sgd"
    assert exp.stage_handler(exp.stages[0]) == "h"


def test_bad_values_are_stored_not_raised() -> None:
    exp = sg.Experiment("x")
    bad: Any = {"num_epochs": "three", "typo_param": 1}
    exp.add_stage("a", **bad)
    assert exp.stages[0].params["num_epochs"] == "three"
    assert exp.stages[0].unknown == {"typo_param": 1}
