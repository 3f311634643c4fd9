"""Property tests: random experiments never crash the compiler; accepted plans verify."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import experiments

import stagegraph as sg

EXAMPLES = int(os.environ.get("STAGEGRAPH_FUZZ_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(experiments(), st.sampled_from(["single", "master", "worker"]))
def test_compile_never_raises_and_plans_verify(exp: sg.Experiment, rank: str) -> None:
    plan = sg.compile(exp, rank=rank, logdir="runs")
    assert sg.verify(plan) == []
    for d in plan.diagnostics:
        assert d.code.startswith("SF") and d.message
    if plan.ok:
        for stage in plan.stages:
            position = {cb.name: i for i, cb in enumerate(stage.callbacks)}
            for edge in stage.edges:
                assert position[edge.source] < position[edge.target]


@SETTINGS
@given(experiments())
def test_compiling_twice_gives_the_same_plan_and_hash(exp: sg.Experiment) -> None:
    first, second = sg.compile(exp), sg.compile(exp)
    assert first.model_dump() == second.model_dump()
    assert first.hash == second.hash
    back = sg.ExecutionPlan.model_validate_json(first.to_json())
    assert back.hash == first.hash
