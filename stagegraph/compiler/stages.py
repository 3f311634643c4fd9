"""Pass 2, stage graph: check the stage edges and put the stages in run order.

Requires: the schema pass (unique stage names).
Guarantees: ``plan.stages`` in a topological order of the stage edges, ties broken by declaration
order; ``plan.stage_edges`` lists every edge; each stage's ``index`` is its run position. Unknown
stage names (SF202) and cycles (SF201) are reported; with a cycle, declaration order is kept.
"""

from __future__ import annotations

import networkx as nx

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.plan import ExecutionPlan, StageEdge


def stage_graph(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    names = [s.name for s in plan.stages]
    declared = {name: i for i, name in enumerate(names)}
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(names)
    edges = []
    stages = []
    for stage in plan.stages:
        kept = []
        for source in stage.after:
            if source not in declared:
                diags.error("SF202", f"stage {stage.name!r} follows unknown stage {source!r}."
                            + did_you_mean(source, names),
                            f"stages are: {', '.join(map(repr, names))}", stage=stage.name,
                            param="after")
                continue
            kept.append(source)
            graph.add_edge(source, stage.name)
            edges.append(StageEdge(source=source, target=stage.name))
        stages.append(stage.model_copy(update={"after": tuple(kept)}))
    order = _run_order(graph, declared, diags)
    by_name = {s.name: s for s in stages}
    ordered = tuple(by_name[n].model_copy(update={"index": i}) for i, n in enumerate(order))
    return plan.model_copy(update={"stages": ordered, "stage_edges": tuple(edges)})


def _run_order(graph: nx.DiGraph, declared: dict[str, int], diags: Diagnostics) -> list[str]:
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return list(nx.lexicographical_topological_sort(graph, key=declared.__getitem__))
    path = " -> ".join([*(u for u, _ in cycle), cycle[0][0]])
    diags.error("SF201", f"the stages form a cycle: {path}",
                "remove one of these 'after' edges; stages must form a DAG",
                stage=cycle[0][0], param="after")
    return sorted(declared, key=declared.__getitem__)
