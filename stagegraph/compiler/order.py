"""Pass 5, callback order: derive each stage's callback order from hard edges and tie-breaks.

Requires: a stage's callbacks complete (declared, migrated, defaults), in tie-break position.
Guarantees: ``callbacks`` in an order that respects every hard edge — ``after`` / ``before``
(explicit) and dataflow (every writer of a key before every reader of it, keys inferred from a
callback's code included, their edges marked ``inferred``) — with the order bucket
and then the tie-break position deciding between unordered callbacks; ``edges`` lists the hard
edges with their reasons; ``inversions`` the hard edges that put a higher bucket first. Unknown
names (SF401) and cycles (SF402, printed with every edge's reason) are reported; a stage with a
cycle keeps bucket order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import networkx as nx

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.inferred import inferred, inferred_at, source_note
from stagegraph.compiler.keys import namespace
from stagegraph.compiler.plan import (
    CallbackPlan,
    EdgePlan,
    ExecutionPlan,
    InferredAccess,
    StagePlan,
)
from stagegraph.graph.enums import EVENT_METHODS, bucket_name


def callback_order(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    where: dict[str, list[str]] = defaultdict(list)
    for stage in plan.stages:
        for cb in stage.callbacks:
            where[cb.name].append(stage.name)
    return plan.model_copy(update={"stages": tuple(order_stage(s, diags, where)
                                                   for s in plan.stages)})


def order_stage(stage: StagePlan, diags: Diagnostics,
                where: Mapping[str, list[str]] | None = None) -> StagePlan:
    """One stage's order; see the module docstring. ``where``: the stages each callback name is
    in, so that an unknown ``after`` / ``before`` can say where that name does exist."""
    callbacks = stage.callbacks
    position = {cb.name: i for i, cb in enumerate(callbacks)}
    edges = [*_explicit_edges(stage, position, where or {}, diags),
             *_dataflow_edges(callbacks)]
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(position)
    for edge in edges:
        if graph.has_edge(edge.source, edge.target):
            graph.edges[edge.source, edge.target]["reasons"].append(edge)
        else:
            graph.add_edge(edge.source, edge.target, reasons=[edge])
    by_name = {cb.name: cb for cb in callbacks}

    def tie_break(name: str) -> tuple[int, int]:
        return (by_name[name].order, position[name])

    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        names = list(nx.lexicographical_topological_sort(graph, key=tie_break))
    else:
        _report_cycle(stage.name, cycle, graph, diags)
        names = sorted(position, key=tie_break)
    inversions = tuple(
        e for e in edges if by_name[e.source].order > by_name[e.target].order
    )
    return stage.model_copy(update={
        "callbacks": tuple(by_name[n] for n in names),
        "edges": tuple(edges),
        "inversions": inversions,
    })


def _explicit_edges(stage: StagePlan, position: dict[str, int],
                    where: Mapping[str, list[str]], diags: Diagnostics) -> list[EdgePlan]:
    edges = []
    for cb in stage.callbacks:
        for other, field in [(o, "after") for o in cb.after] + [(o, "before") for o in cb.before]:
            if other not in position:
                _report_unknown(stage, cb.name, field, other, list(position), where, diags)
                continue
            if other == cb.name:
                diags.error("SF401", f"callback {cb.name!r} names itself in {field}",
                            f"remove {other!r} from {field}", stage=stage.name,
                            callback=cb.name)
                continue
            source, target = (other, cb.name) if field == "after" else (cb.name, other)
            edges.append(EdgePlan(source=source, target=target, kind="explicit",
                                  reason=f"{cb.name!r} declares {field}={other!r}"))
    return edges


def _report_unknown(stage: StagePlan, name: str, field: str, other: str, names: list[str],
                    where: Mapping[str, list[str]], diags: Diagnostics) -> None:
    """SF401 for an ``after`` / ``before`` naming no callback of the stage; the did-you-mean is
    among the stage's other callbacks, never the one declaring it."""
    elsewhere = [s for s in dict.fromkeys(where.get(other, ())) if s != stage.name]
    found = (f" Only stage(s) {', '.join(map(repr, elsewhere))} have a callback {other!r}: "
             "ordering constraints apply within one stage." if elsewhere else "")
    others = [n for n in names if n != name]
    diags.error("SF401", f"{field}={other!r} names no callback of this stage."
                f"{did_you_mean(other, others)}{found}",
                f"{f'remove {other!r} from {field}, or name' if elsewhere else 'name'} one of "
                f"the callbacks of stage "
                f"{stage.name!r}: {', '.join(map(repr, others)) or 'none'}",
                stage=stage.name, callback=name)


def _dataflow_edges(callbacks: tuple[CallbackPlan, ...]) -> list[EdgePlan]:
    # Indexed by exact key and by namespace, so matching stays linear in the number of edges.
    exact: dict[str, list[tuple[str, CallbackPlan]]] = defaultdict(list)
    by_namespace: dict[str, list[tuple[str, CallbackPlan]]] = defaultdict(list)
    wildcards: dict[str, list[tuple[str, CallbackPlan]]] = defaultdict(list)
    for cb in callbacks:
        for key in cb.writes:
            exact[key].append((key, cb))
            by_namespace[namespace(key)].append((key, cb))
            if key.endswith(".*"):
                wildcards[namespace(key)].append((key, cb))
    edges = []
    for reader in callbacks:
        for key in reader.reads:
            ns = namespace(key)
            if key.endswith(".*"):
                edges.extend(_namespace_edges(key, reader, by_namespace.get(ns, [])))
                continue
            candidates = exact.get(key, []) + wildcards.get(ns, [])
            read = _known(reader, key, "read")
            read_at = None if read is None else read.where
            for written, writer in candidates:
                write = _known(writer, written, "write")
                if writer.name == reader.name or not _meet(writer, write, reader, read):
                    continue
                written_at = None if write is None else write.where
                edges.append(EdgePlan(
                    source=writer.name, target=reader.name, kind="dataflow",
                    key=key if written.endswith(".*") else written,
                    reason=_dataflow_reason(writer.name, written, written_at, reader.name, key,
                                            read_at),
                    inferred=read_at or written_at,
                ))
    return edges


def _known(cb: CallbackPlan, key: str, access: str) -> InferredAccess | None:
    """How ``cb``'s code accesses ``key``, when only its code says so."""
    return inferred(cb, key, access) if cb.inferred else None


def _meet(writer: CallbackPlan, write: InferredAccess | None, reader: CallbackPlan,
          read: InferredAccess | None) -> bool:
    """Whether the write and the read may happen in the same event, where order decides.

    Known only where code shows a side (an inferred access names the methods it is in); the other
    side counts every event its callback handles. A read in ``on_loader_end`` of what is written
    in ``on_epoch_end`` comes first whatever the order, so it makes no edge (an edge there could
    only make a false cycle). Two declared keys, or code in a helper method, always make an edge.
    """
    if read is None and write is None:
        return True
    read_events = set(read.events) if read is not None else set(reader.events)
    write_events = set(write.events) if write is not None else set(writer.events)
    if not read_events or not write_events or not (read_events | write_events) <= _EVENTS:
        return True  # no event known, or a helper method: when it runs is unknown
    return bool(read_events & write_events)


_EVENTS = frozenset(EVENT_METHODS)


def _namespace_edges(key: str, reader: CallbackPlan,
                     candidates: list[tuple[str, CallbackPlan]]) -> list[EdgePlan]:
    """One edge per writer for a wildcard read ``ns.*``, however many of its keys it writes.

    The metric flow gives the aggregation one key per loader and metric, so an edge per key
    would multiply edges (and drawn labels) by the number of metrics.
    """
    read = _known(reader, key, "read")
    by_writer: dict[str, tuple[CallbackPlan, list[str]]] = {}
    for key_written, writer in candidates:
        if writer.name != reader.name and _meet(writer, _known(writer, key_written, "write"),
                                                reader, read):
            by_writer.setdefault(writer.name, (writer, []))[1].append(key_written)
    read_at = None if read is None else read.where
    edges = []
    for name, (writer, written) in by_writer.items():
        first, more = written[0], len(written) - 1
        written_at = inferred_at(writer, first, "write") if writer.inferred else None
        edges.append(EdgePlan(
            source=name, target=reader.name, kind="dataflow",
            key=key if more or first.endswith(".*") else first,
            reason=_dataflow_reason(name, first, written_at, reader.name, key, read_at, more),
            inferred=read_at or written_at,
        ))
    return edges


def _dataflow_reason(writer: str, written: str, written_at: str | None, reader: str, key: str,
                     read_at: str | None, more: int = 0) -> str:
    """``'w' writes 'k', which 'r' reads``; a side known only from code says where in it;
    ``more`` other keys the writer writes that a wildcard read takes too."""
    read = f"{reader!r} reads" if written == key else f"{reader!r} reads as {key!r}"
    what = f"{written!r}{source_note(written_at)}"
    if more:
        what += f" and {more} more {namespace(key)!r} key{'s' if more > 1 else ''}"
    return f"{writer!r} writes {what}, which {read}{source_note(read_at)}"


def _report_cycle(stage: str, cycle: list[tuple[str, str]], graph: nx.DiGraph,
                  diags: Diagnostics) -> None:
    path = " -> ".join([*(u for u, _ in cycle), cycle[0][0]])
    reasons = "; ".join(
        f"{u} -> {v}: {graph.edges[u, v]['reasons'][0].reason}" for u, v in cycle
    )
    edges = [graph.edges[u, v]["reasons"][0] for u, v in cycle]
    diags.error("SF402", f"callbacks form a cycle: {path} ({reasons})", _cycle_hint(edges),
                stage=stage, callback=cycle[0][0])


def _cycle_hint(edges: list[EdgePlan]) -> str:
    explicit = [e for e in edges if e.kind == "explicit"]
    if explicit:
        return ("drop one of these after/before declarations, or split a key that is both "
                "read and written along the cycle")
    # Only dataflow: every event runs the stage's callbacks in one order, so no order serves
    # every read along the cycle.
    return ("no after/before is involved: each callback along the cycle writes a key the next "
            "one reads, and every event runs a stage's callbacks in one order; use distinct keys "
            "for what is read and what is written along the cycle, or split a callback that "
            "writes a key and also reads what is derived from it into two (one writes, e.g. in "
            "the Metric bucket; one reads, e.g. in the External bucket)")


def describe_inversion(edge: EdgePlan, stage: StagePlan) -> str:
    """``'a' (Optimizer (60)) runs before 'b' (Metric (20)) because ...``."""
    src, dst = stage.callback(edge.source), stage.callback(edge.target)
    return (f"{edge.source!r} ({bucket_name(src.order)}) runs before {edge.target!r} "
            f"({bucket_name(dst.order)}) because {edge.reason}")
