"""The verifier: the invariants every plan the compiler accepts must hold.

It returns the problems it finds rather than raising, so tests can run it after every pass and
compare messages exactly. A plan with error diagnostics is only checked for what those errors
leave intact (a stage cycle leaves the stage order unchecked, a callback cycle the callback order).
"""

from __future__ import annotations

from stagegraph.compiler.plan import ExecutionPlan, StagePlan
from stagegraph.graph.enums import EVENT_METHODS


def verify(plan: ExecutionPlan) -> list[str]:
    problems: list[str] = []
    codes = {d.code for d in plan.errors}
    names = [s.name for s in plan.stages]
    if len(set(names)) != len(names):
        problems.append(f"stage names are not unique: {names}")
    position = {n: i for i, n in enumerate(names)}
    for i, stage in enumerate(plan.stages):
        if stage.index != i:
            problems.append(f"stage {stage.name!r} has index {stage.index}, expected {i}")
    if "SF201" not in codes:
        for edge in plan.stage_edges:
            if edge.source not in position or edge.target not in position:
                problems.append(f"stage edge {edge.source!r} -> {edge.target!r} names an unknown "
                                "stage")
            elif position[edge.source] >= position[edge.target]:
                problems.append(f"stage {edge.source!r} must run before {edge.target!r}")
    for stage in plan.stages:
        problems.extend(_verify_stage(stage, "SF402" in codes))
    return problems


def _verify_stage(stage: StagePlan, has_cycle: bool) -> list[str]:
    where = f"stage {stage.name!r}"
    problems = []
    names = [cb.name for cb in stage.callbacks]
    if len(set(names)) != len(names):
        problems.append(f"{where}: callback names are not unique: {names}")
    position = {n: i for i, n in enumerate(names)}
    loaders = [loader.name for loader in stage.loaders]
    if len(set(loaders)) != len(loaders):
        problems.append(f"{where}: loader names are not unique: {loaders}")
    for edge in stage.edges:
        if edge.source not in position or edge.target not in position:
            problems.append(f"{where}: edge {edge.source!r} -> {edge.target!r} names an unknown "
                            "callback")
        elif not has_cycle and position[edge.source] > position[edge.target]:
            problems.append(f"{where}: {edge.source!r} must run before {edge.target!r} "
                            f"({edge.reason})")
    by_name = {cb.name: cb for cb in stage.callbacks}
    for event, table in stage.dispatch.items():
        if event not in EVENT_METHODS:
            problems.append(f"{where}: dispatch table for unknown event {event!r}")
        for name in table:
            if name not in by_name:
                problems.append(f"{where}: dispatch[{event!r}] names unknown callback {name!r}")
            elif event not in by_name[name].events:
                problems.append(f"{where}: dispatch[{event!r}] lists {name!r}, which does not "
                                "handle that event")
        if [n for n in names if n in table] != [n for n in table if n in by_name]:
            problems.append(f"{where}: dispatch[{event!r}] is not in plan order")
    for cb in stage.callbacks:
        for event in cb.events:
            if cb.name not in stage.dispatch.get(event, ()):
                problems.append(f"{where}: {cb.name!r} handles {event!r} but is not dispatched")
        if cb.origin == "migrated" and cb.source_stage not in stage.after:
            problems.append(f"{where}: {cb.name!r} migrated from {cb.source_stage!r}, which this "
                            "stage does not follow")
        if cb.origin == "default" and not cb.target:
            problems.append(f"{where}: default callback {cb.name!r} has no target")
    return problems
