"""`explain`: why one callback runs before another in a stage — the chain of hard edges."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import networkx as nx

from stagegraph.compiler import display
from stagegraph.compiler.plan import CallbackPlan, EdgePlan, ExecutionPlan, StagePlan
from stagegraph.graph.enums import bucket_name


@dataclass(frozen=True)
class Explanation:
    """The answer: ``relation`` is ``before``, ``after``, ``unordered`` or ``unknown``."""

    stage: str
    first: str
    second: str
    relation: str
    chain: tuple[EdgePlan, ...] = ()
    lines: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def _repr_markdown_(self) -> str:
        return display.explanation_markdown(self)

    def _repr_html_(self) -> str:
        return display.explanation_html(self)


def explain(plan: ExecutionPlan, stage_name: str, first: str, second: str) -> Explanation:
    """Explain the relative order of ``first`` and ``second`` in ``stage_name``."""
    try:
        stage = plan.stage(stage_name)
    except KeyError as err:
        return Explanation(stage_name, first, second, "unknown", lines=(str(err.args[0]),))
    names = [cb.name for cb in stage.callbacks]
    missing = [n for n in (first, second) if n not in names]
    if missing:
        known = ", ".join(map(repr, names))
        lines = tuple(f"stage {stage_name!r} has no callback {n!r}; callbacks: {known}"
                      for n in missing)
        return Explanation(stage_name, first, second, "unknown", lines=lines)
    graph = _graph(stage)
    for a, b, relation in ((first, second, "before"), (second, first, "after")):
        if a != b and nx.has_path(graph, a, b):
            chain = _chain(graph, nx.shortest_path(graph, a, b))
            return Explanation(stage_name, first, second, relation, chain,
                               _chain_lines(stage, a, b, chain))
    return Explanation(stage_name, first, second, "unordered",
                       lines=_unordered_lines(stage, graph, first, second))


def _graph(stage: StagePlan) -> nx.DiGraph:
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(cb.name for cb in stage.callbacks)
    for edge in stage.edges:
        if not graph.has_edge(edge.source, edge.target):
            graph.add_edge(edge.source, edge.target, edge=edge)
    return graph


def _chain(graph: nx.DiGraph, path: list[str]) -> tuple[EdgePlan, ...]:
    return tuple(graph.edges[u, v]["edge"] for u, v in pairwise(path))


def _chain_lines(stage: StagePlan, a: str, b: str, chain: tuple[EdgePlan, ...]
                 ) -> tuple[str, ...]:
    inverted = {(e.source, e.target) for e in stage.inversions}
    lines = [f"in stage {stage.name!r}, {a!r} runs before {b!r}:"]
    for edge in chain:
        note = ""
        if (edge.source, edge.target) in inverted:
            src, dst = stage.callback(edge.source), stage.callback(edge.target)
            note = (f"  [overrides order buckets: {bucket_name(src.order)} before "
                    f"{bucket_name(dst.order)}]")
        lines.append(f"  {edge.source} -> {edge.target}: {edge.reason} ({edge.kind}){note}")
    return tuple(lines)


def _unordered_lines(stage: StagePlan, graph: nx.DiGraph, a: str, b: str) -> tuple[str, ...]:
    position = {cb.name: i for i, cb in enumerate(stage.callbacks)}
    x, y = sorted((a, b), key=position.__getitem__)
    cx, cy = stage.callback(x), stage.callback(y)
    lines = [f"in stage {stage.name!r}, no chain of hard edges orders {a!r} and {b!r};",
             f"the plan runs {x!r} first (position {position[x] + 1} of {len(position)}) "
             f"and {y!r} at position {position[y] + 1}:"]
    if cx.order < cy.order:
        lines.append(f"  tie-break by order bucket: {bucket_name(cx.order)} < "
                     f"{bucket_name(cy.order)}")
    elif cx.order == cy.order:
        shadowing = [cb for cb in (cx, cy) if cb.shadowed_order is not None]
        if not shadowing:
            lines.append(f"  same order bucket {bucket_name(cx.order)}; {x!r} comes first in "
                         "declaration order (migrated and default callbacks come after a stage's "
                         "own)")
        else:
            lines.append(f"  same order bucket {bucket_name(cx.order)}; {x!r} comes first in "
                         "tie-break position:")
        lines.extend(_slot_note(stage, cb) for cb in (cx, cy) if cb.shadowed_order is not None)
    else:
        held = sorted(nx.ancestors(graph, x) - nx.ancestors(graph, y) - {y},
                      key=position.__getitem__)
        lines.append(f"  {x!r} has the higher bucket ({bucket_name(cx.order)} vs "
                     f"{bucket_name(cy.order)}) but {y!r} waits for callbacks that must run "
                     f"after {x!r} or is held back by hard edges; "
                     f"predecessors of {x!r}: {', '.join(map(repr, held)) or 'none'}")
    return tuple(lines)


def _slot_note(stage: StagePlan, cb: CallbackPlan) -> str:
    return (f"  {cb.name!r} migrated from {cb.source_stage!r} sits in the slot of the {cb.name!r} "
            f"declared in stage {stage.name!r}: the stage's own callbacks are sorted by their "
            f"declared order first (that one's was {bucket_name(cb.shadowed_order or 0)}), as in "
            "the seed runner")
