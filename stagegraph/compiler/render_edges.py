"""The edges drawn inside one stage: every hard edge (full detail), or a compact set of them.

Compact detail leaves out an edge a longer chain of hard edges already implies (the transitive
reduction; never a bold red edge that overrides the order buckets), then bundles fan-in: where
two or more callbacks each read a key family (``epoch_metric``) from the same two or more
writers, one hub node labelled ``epoch_metric.*`` stands between the writers and the readers.
The result is plain data (`DrawnEdge`, `Hub`); `render` turns it into DOT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx

from stagegraph.compiler.plan import EdgePlan, StagePlan

Pair = tuple[str, str]


@dataclass(frozen=True)
class Hub:
    """One key family read by ``readers`` from every one of ``writers`` (callback names)."""

    family: str
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    edges: tuple[EdgePlan, ...] = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.family}.*"


@dataclass(frozen=True)
class StageEdges:
    """What to draw in a stage: edges between callbacks (by name, with their reasons) and hubs."""

    pairs: dict[Pair, list[EdgePlan]]
    hubs: tuple[Hub, ...] = ()


def stage_edges(stage: StagePlan, *, compact: bool) -> StageEdges:
    """The edges between ``stage``'s callbacks to draw: all of them, or the compact set."""
    names = [cb.name for cb in stage.callbacks]
    pairs = {p: g for p, g in group(stage.edges).items() if p[0] in names and p[1] in names}
    if not compact:
        return StageEdges(pairs)
    inverted = {(e.source, e.target) for e in stage.inversions}
    pairs = _reduce(pairs, keep=inverted)
    hubs = _hubs(pairs, inverted, order=names)
    bundled = {id(e) for hub in hubs for e in hub.edges}
    rest = {p: [e for e in g if id(e) not in bundled] for p, g in pairs.items()}
    return StageEdges({p: g for p, g in rest.items() if g}, tuple(hubs))


def group(edges: Iterable[EdgePlan]) -> dict[Pair, list[EdgePlan]]:
    grouped: dict[Pair, list[EdgePlan]] = {}
    for edge in edges:
        grouped.setdefault((edge.source, edge.target), []).append(edge)
    return grouped


def _reduce(pairs: dict[Pair, list[EdgePlan]], keep: set[Pair]) -> dict[Pair, list[EdgePlan]]:
    """Drop pairs a longer chain implies; a plan with a cycle (an error) keeps every pair."""
    graph = nx.DiGraph(list(pairs))
    if not nx.is_directed_acyclic_graph(graph):
        return pairs
    reduced = set(nx.transitive_reduction(graph).edges) | keep
    return {p: g for p, g in pairs.items() if p in reduced}


def _family(edge: EdgePlan) -> str | None:
    if edge.kind != "dataflow" or edge.key is None or edge.inferred or "." not in edge.key:
        return None
    return edge.key.split(".", 1)[0]


def _hubs(pairs: dict[Pair, list[EdgePlan]], inverted: set[Pair], order: list[str]) -> list[Hub]:
    """A hub per key family whose two or more writers feed two or more readers each; writers
    and readers in plan ``order``."""
    by_family: dict[str, list[EdgePlan]] = {}
    for pair, edges in pairs.items():
        for edge in edges if pair not in inverted else ():
            family = _family(edge)
            if family is not None:
                by_family.setdefault(family, []).append(edge)
    hubs = []
    for family, edges in by_family.items():
        writers = tuple(sorted({e.source for e in edges}, key=order.index))
        sources: dict[str, set[str]] = {}
        for edge in edges:
            sources.setdefault(edge.target, set()).add(edge.source)
        readers = tuple(sorted((r for r, got in sources.items() if got == set(writers)),
                               key=order.index))
        if len(writers) >= 2 and len(readers) >= 2:
            kept = tuple(e for e in edges if e.target in readers)
            hubs.append(Hub(family, writers, readers, kept))
    return hubs
