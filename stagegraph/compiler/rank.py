"""Pass 6, rank filter: keep the callbacks the plan's kind of process runs.

Requires: callback order resolved for the full set of callbacks.
Guarantees: a ``single`` process keeps every callback whatever its ``node`` (the seed's rule); a
distributed ``master`` drops ``worker`` callbacks and a ``worker`` drops ``master`` ones, with the
edges touching them. Filtering after ordering keeps the same relative order on every rank, and a
callback may name one that only the other rank runs in ``after`` / ``before``.
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import EdgePlan, ExecutionPlan, StagePlan
from stagegraph.graph.enums import CallbackNode, RankKind

DROPPED = {
    RankKind.single: frozenset(),
    RankKind.master: frozenset({CallbackNode.worker}),
    RankKind.worker: frozenset({CallbackNode.master}),
}


def rank_filter(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    dropped = DROPPED[plan.rank]
    if not dropped:
        return plan
    return plan.model_copy(update={"stages": tuple(_filter(s, dropped) for s in plan.stages)})


def _filter(stage: StagePlan, dropped: frozenset[CallbackNode]) -> StagePlan:
    kept = tuple(cb for cb in stage.callbacks if cb.node not in dropped)
    names = {cb.name for cb in kept}

    def keep(edges: tuple[EdgePlan, ...]) -> tuple[EdgePlan, ...]:
        return tuple(e for e in edges if e.source in names and e.target in names)

    return stage.model_copy(update={"callbacks": kept, "edges": keep(stage.edges),
                                    "inversions": keep(stage.inversions)})
