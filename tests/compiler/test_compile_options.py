"""``compile=``: options checked at validate time (SF530), the plan's `CompilePlan`."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import LOADERS

import stagegraph as sg
from stagegraph.compiler.compile_options import compile_plan, torch_options
from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import CompilePlan
from stagegraph.compiler.text import plan_to_text


def messages(value: Any) -> list[str]:
    diags = Diagnostics()
    compile_plan(value, diags, stage="train")
    assert {d.code for d in diags.items} <= {"SF530"}
    return [d.message for d in diags.items]


@pytest.mark.parametrize(("value", "expected"), [
    ({"fulgraph": True}, "compile has no option 'fulgraph'. Did you mean 'fullgraph'?"),
    ({"backnd": "eager"}, "compile has no option 'backnd'. Did you mean 'backend'?"),
    ({"mode": "max-autotun"}, "compile option 'mode' is one of default, reduce-overhead, "
     "max-autotune, max-autotune-no-cudagraphs, not 'max-autotun'. Did you mean 'max-autotune'?"),
    ({"fullgraph": "yes"}, "compile option 'fullgraph' is True or False, not 'yes'"),
    ({"dynamic": 1}, "compile option 'dynamic' is True, False or None, not 1"),
    ({"backend": ""}, "compile option 'backend' is a backend's name or a callable, not ''"),
    ({"options": {1: 2}}, "compile option 'options' is a dict of inductor settings, not {1: 2}"),
    ({"mode": "max-autotune", "options": {"x": 1}},
     "compile gives both 'mode' and 'options', which torch.compile refuses"),
    ("yes", "compile must be True, False or a dict of torch.compile options, not 'yes'"),
])
def test_a_bad_option_is_sf530(value: Any, expected: str) -> None:
    assert messages(value) == [expected]


def test_good_values_become_the_plan() -> None:
    assert compile_plan(False, Diagnostics()) is None
    assert compile_plan(None, Diagnostics()) is None
    assert compile_plan(True, Diagnostics()) == CompilePlan()
    assert compile_plan({"disable": True}, Diagnostics()) is None
    assert compile_plan({"backend": "aot_eager", "dynamic": False, "fullgraph": True},
                        Diagnostics()) == CompilePlan(backend="aot_eager", dynamic=False,
                                                      fullgraph=True)

    def my_backend(graph: Any, inputs: Any) -> Any:
        return graph

    plan = compile_plan({"backend": my_backend}, Diagnostics())
    assert plan is not None and plan.backend.endswith("my_backend")
    assert torch_options({"backend": my_backend})["backend"] is my_backend  # type: ignore[index]
    assert torch_options(True) == {} and torch_options({"disable": True}) is None


def test_the_stage_wins_over_the_experiment_whose_problems_are_said_once() -> None:
    exp = sg.Experiment("x", compile={"backend": "eager", "fulgraph": True})
    exp.add_stage("train", loaders=LOADERS)
    exp.add_stage("tune", loaders=LOADERS, compile={"backend": "aot_eager"})
    exp.add_stage("last", loaders=LOADERS, compile=False)
    plan = sg.compile(exp)
    found = [(str(d.location), d.message) for d in plan.diagnostics if d.code == "SF530"]
    assert found == [("param 'compile'",
                      "compile has no option 'fulgraph'. Did you mean 'fullgraph'?")]
    assert [s.compile for s in plan.stages] == [
        CompilePlan(backend="eager"), CompilePlan(backend="aot_eager"), None]
    assert "  compiled: model and criterion, torch.compile(backend='eager')" in (
        plan_to_text(plan))


def test_sf530_is_located_at_the_stage() -> None:
    exp = sg.Experiment("x")
    exp.add_stage("train", loaders=LOADERS, compile={"mod": "default"})
    plan = sg.compile(exp)
    (found,) = [d for d in plan.diagnostics if d.code == "SF530"]
    assert str(found) == (
        "error[SF530] stage 'train' > param 'compile': compile has no option 'mod'. Did you "
        "mean 'mode'?\n  hint: compile is True, False, or a dict of torch.compile options: "
        "mode, fullgraph, dynamic, backend, options, disable, e.g. compile={'backend': "
        "'aot_eager'}")
    assert not plan.ok
