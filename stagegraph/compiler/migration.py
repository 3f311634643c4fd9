"""Pass 3, migration: hand experiment-scoped callbacks along the stage edges.

Requires: stages in run order (the stage graph pass).
Guarantees: every stage with ``migrate_from_previous_stage`` holds the experiment-scoped callbacks
of its predecessors (the very same instances, so their state carries over), as entries with
origin ``migrated``. A migrating callback replaces a declared one of the same name in its place
(the seed's behaviour; SF301 warns that the declared one is unused); one with a new name comes
after the stage's own callbacks. Two predecessors handing over different instances under one
name is an error (SF302). ``migrations`` records what crossed each edge.
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, MigrationPlan, StagePlan
from stagegraph.graph.enums import CallbackScope


def migration(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    done: dict[str, StagePlan] = {}
    out = []
    for stage in plan.stages:
        if stage.migrate_from_previous_stage:
            stage = _receive(stage, [done[p] for p in stage.after if p in done], diags)
        done[stage.name] = stage
        out.append(stage)
    return plan.model_copy(update={"stages": tuple(out)})


def _identity(cb: CallbackPlan) -> tuple[str, str]:
    # Defaults are added after migration, so every entry here names a declared instance.
    return (cb.declared_in, cb.name)


def _receive(stage: StagePlan, predecessors: list[StagePlan], diags: Diagnostics) -> StagePlan:
    incoming: dict[str, CallbackPlan] = {}
    migrations = []
    for pred in predecessors:
        moving = [cb for cb in pred.callbacks if cb.scope is CallbackScope.experiment]
        for cb in moving:
            other = incoming.get(cb.name)
            if other is not None and _identity(other) != _identity(cb):
                diags.error("SF302", f"stages {other.source_stage!r} and {pred.name!r} both hand "
                            f"over a callback named {cb.name!r}, but they are different instances",
                            "rename one of them, or set migrate_from_previous_stage=False on "
                            "this stage", stage=stage.name, callback=cb.name)
                continue
            incoming[cb.name] = cb.model_copy(update={"origin": "migrated",
                                                      "source_stage": pred.name})
        if moving:
            migrations.append(MigrationPlan(source=pred.name, target=stage.name,
                                            callbacks=tuple(cb.name for cb in moving)))
    if not incoming:
        return stage
    callbacks = []
    for cb in stage.callbacks:
        arriving = incoming.pop(cb.name, None)
        if arriving is None:
            callbacks.append(cb)
            continue
        if _identity(arriving) != _identity(cb):
            diags.warning("SF301", f"callback {cb.name!r} declared here is unused: the "
                          f"experiment-scoped {cb.name!r} migrating from "
                          f"{arriving.source_stage!r} continues in its place",
                          "rename one of them, or set migrate_from_previous_stage=False",
                          stage=stage.name, callback=cb.name)
        callbacks.append(arriving)
    callbacks.extend(incoming.values())
    return stage.model_copy(update={"callbacks": tuple(callbacks),
                                    "migrations": tuple(migrations)})
