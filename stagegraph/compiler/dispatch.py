"""Pass 7, dispatch tables: per stage and event, the callbacks that override that event.

Requires: callbacks in their final order, on this rank.
Guarantees: ``dispatch[event]`` lists, in plan order, exactly the callbacks whose class defines
``event``; events nobody handles are absent, so the runtime never calls an empty hook.
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import ExecutionPlan, StagePlan
from stagegraph.graph.enums import EVENT_METHODS


def dispatch(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    return plan.model_copy(update={"stages": tuple(_tables(s) for s in plan.stages)})


def _tables(stage: StagePlan) -> StagePlan:
    tables = {}
    for event in EVENT_METHODS:
        names = tuple(cb.name for cb in stage.callbacks if event in cb.events)
        if names:
            tables[event] = names
    return stage.model_copy(update={"dispatch": tables})
