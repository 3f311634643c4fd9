"""Catalyst's spellings of nodes and scopes are aliases of the canonical members."""

from __future__ import annotations

import json
from typing import Any

import stagegraph as sg
from stagegraph.graph.enums import CallbackNode, CallbackScope


def test_capitalised_members_are_aliases() -> None:
    assert CallbackNode.All is CallbackNode.all
    assert CallbackNode.Master is CallbackNode.master
    assert CallbackNode.Worker is CallbackNode.worker
    assert CallbackScope.Stage is CallbackScope.stage
    assert CallbackScope.Experiment is CallbackScope.experiment
    assert [m.value for m in CallbackNode] == ["all", "master", "worker"]  # aliases not listed


class CatalystStyle(sg.Callback):
    scope = sg.CallbackScope.Experiment
    node = sg.CallbackNode.Master

    def on_stage_start(self, runner: Any) -> None: ...


def test_catalyst_spelling_compiles_to_canonical_values() -> None:
    exp = sg.Experiment("x", model=object(), criterion=object(), optimizer=object())
    exp.add_stage("one", loaders={"train": [], "valid": []}, callbacks={"cb": CatalystStyle()})
    exp.add_stage("two", loaders={"train": [], "valid": []})
    plan = sg.compile(exp)
    data = json.loads(plan.to_json())
    migrated = plan.stage("two").callback("cb")
    assert migrated.origin == "migrated"
    entry = next(c for c in data["stages"][0]["callbacks"] if c["name"] == "cb")
    assert (entry["scope"], entry["node"]) == ("experiment", "master")
    assert "Experiment" not in plan.to_graphviz().source


def test_per_instance_catalyst_spelling() -> None:
    cb = sg.Callback(scope=sg.CallbackScope.Experiment, node=sg.CallbackNode.Worker)
    exp = sg.Experiment("x", model=object(), criterion=object(), optimizer=object())
    exp.add_stage("one", loaders={"train": [], "valid": []}, callbacks={"cb": cb})
    plan = sg.compile(exp)
    assert plan.stage("one").callback("cb").node is CallbackNode.worker
