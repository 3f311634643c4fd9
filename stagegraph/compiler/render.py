"""Graphviz emitter: draw an `ExecutionPlan` as a `graphviz.Digraph`, a pure function of the plan.

Stages are clusters in run order, joined by their stage edges; a stage edge along which
experiment-scoped callbacks migrate is drawn green and labelled with them. Inside a stage the
callbacks stand top to bottom in plan order, each numbered with its position; hard edges carry
their reason (the dataflow key, or ``after`` / ``before``); an edge only a callback's code shows
(a key inferred from its source) is dashed, and one that overrides the order buckets bold red.
Fill colour shows a callback's origin, a double border its experiment scope, and a coloured
border plus a tag its node (master / worker). Node ids are positional
(``s0``, ``s0_c3``), so any callback or stage name — unicode, spaces, quotes, colons — only ever
appears inside an escaped label."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

import graphviz

from stagegraph.compiler.plan import (
    CallbackPlan,
    EdgePlan,
    ExecutionPlan,
    MigrationPlan,
    StagePlan,
)
from stagegraph.graph.enums import CallbackNode, CallbackScope, bucket_name

FONT = "Helvetica"

ORIGIN_FILL = {"declared": "#dbe8fb", "migrated": "#d9f2dd", "default": "#eeeeee"}
NODE_BORDER = {
    CallbackNode.all: {"color": "#444444"},
    CallbackNode.master: {"color": "#c05800", "penwidth": "2.5"},
    CallbackNode.worker: {"color": "#7b1fa2", "penwidth": "2"},
}
NODE_TAG = {CallbackNode.all: "", CallbackNode.master: "[master]", CallbackNode.worker: "[worker]"}

EXPLICIT = {"color": "#222222"}
DATAFLOW = {"color": "#1a5fb4", "fontcolor": "#1a5fb4"}
INVERTED = {"color": "#d00000", "fontcolor": "#d00000", "penwidth": "2.5", "style": "bold"}
STAGE_EDGE = {"color": "#555555", "penwidth": "2"}
MIGRATION = {"color": "#2e7d32", "fontcolor": "#2e7d32", "penwidth": "2.5"}


def to_graphviz(plan: ExecutionPlan) -> graphviz.Digraph:
    """The plan as a `graphviz.Digraph`; ``.source`` is the DOT text, ``.pipe('svg')`` draws it.

    >>> import stagegraph as sg
    >>> exp = sg.Experiment("demo", model=object())
    >>> _ = exp.add_stage("train", loaders={"train": [], "valid": []})
    >>> "cluster_s0" in sg.compile(exp).to_graphviz().source
    True
    """
    graph = graphviz.Digraph(
        "plan",
        graph_attr={"compound": "true", "rankdir": "TB", "fontname": FONT,
                    "label": _escape(_title(plan)), "labelloc": "t", "nodesep": "0.3"},
        node_attr={"fontname": FONT, "fontsize": "10"},
        edge_attr={"fontname": FONT, "fontsize": "9"},
    )
    for stage in plan.stages:
        graph.subgraph(_stage_cluster(stage))
    for attrs in _between_stages(plan):
        graph.edge(attrs.pop("tail"), attrs.pop("head"), **attrs)
    graph.subgraph(_legend())
    return graph


def _title(plan: ExecutionPlan) -> str:
    counts = f"{len(plan.errors)} error(s), {len(plan.warnings)} warning(s)"
    return (f"experiment {plan.experiment!r} · rank {plan.rank.value} · device {plan.device}"
            f" · {counts} · hash {plan.hash[:12]}")


def _escape(text: str) -> str:
    """User text as a literal label: backslashes doubled, never read as an HTML label."""
    return graphviz.escape(text)


def _lines(*parts: str) -> str:
    """Escaped lines joined by DOT's centred line break."""
    return graphviz.nohtml("\\n".join(_escape(p) for p in parts if p))


# --- ids -------------------------------------------------------------------------------------
def stage_id(stage: StagePlan) -> str:
    return f"s{stage.index}"


def callback_id(stage: StagePlan, position: int) -> str:
    """Unique per stage and across the graph: ``s<stage index>_c<position from 1>``."""
    return f"s{stage.index}_c{position}"


# --- a stage ---------------------------------------------------------------------------------
def _stage_cluster(stage: StagePlan) -> graphviz.Digraph:
    cluster = graphviz.Digraph(
        f"cluster_{stage_id(stage)}",
        graph_attr={"label": _escape(f"stage {stage.index + 1}: {stage.name}"),
                    "style": "rounded", "color": "#888888", "fontsize": "14"},
    )
    cluster.node(stage_id(stage), _lines(*_stage_summary(stage)), shape="note",
                 style="filled", fillcolor="#fffbe6", color="#b59f3b")
    ids = {cb.name: callback_id(stage, i) for i, cb in enumerate(stage.callbacks, 1)}
    for i, cb in enumerate(stage.callbacks, 1):
        cluster.node(ids[cb.name], _lines(*_callback_label(i, cb)), **node_style(cb))
    # The invisible chain keeps the callbacks in plan order, top to bottom.
    chain = [stage_id(stage), *ids.values()]
    for tail, head in pairwise(chain):
        cluster.edge(tail, head, style="invis", weight="10")
    inverted = {(e.source, e.target) for e in stage.inversions}
    for (source, target), group in _group(stage.edges).items():
        if source in ids and target in ids:
            style = edge_style(group, stage, inverted=(source, target) in inverted)
            cluster.edge(ids[source], ids[target], **style)
    return cluster


def _stage_summary(stage: StagePlan) -> list[str]:
    if stage.is_infer:
        kind = "inference"
    else:
        goal = "min" if stage.minimize_metric else "max"
        kind = f"main metric {stage.main_metric} ({goal}), valid loader {stage.valid_loader}"
    loaders = ", ".join(ld.name for ld in stage.loaders) or "none"
    migration = "" if stage.migrate_from_previous_stage else "migration off"
    return [f"{stage.num_epochs} epoch(s) · {kind}", f"loaders: {loaders}",
            f"handler: {stage.handler.type}", migration]


def _callback_label(position: int, cb: CallbackPlan) -> list[str]:
    short = cb.type.rsplit(".", 1)[-1]
    tags = [NODE_TAG[cb.node]]
    if cb.scope is CallbackScope.experiment:
        tags.append("experiment scope")
    if cb.origin == "migrated":
        tags.append(f"migrated from {cb.source_stage}")
    elif cb.origin == "default":
        tags.append("default")
    return [f"{position}. {cb.name}", f"{short} · {bucket_name(cb.order)}",
            " · ".join(t for t in tags if t)]


def node_style(cb: CallbackPlan) -> dict[str, str]:
    """Fill by origin, double border for experiment scope, border colour and width by node."""
    style = {"shape": "box", "style": "rounded,filled", "fillcolor": ORIGIN_FILL[cb.origin]}
    if cb.scope is CallbackScope.experiment:
        style["peripheries"] = "2"
    return {**style, **NODE_BORDER[cb.node]}


# --- edges -----------------------------------------------------------------------------------
def _group(edges: Iterable[EdgePlan]) -> dict[tuple[str, str], list[EdgePlan]]:
    grouped: dict[tuple[str, str], list[EdgePlan]] = {}
    for edge in edges:
        grouped.setdefault((edge.source, edge.target), []).append(edge)
    return grouped


def edge_style(group: list[EdgePlan], stage: StagePlan, *, inverted: bool) -> dict[str, str]:
    """One drawn edge for every hard edge between a pair: its reasons as label lines."""
    labels = list(dict.fromkeys(_edge_reason(e, stage) for e in group))
    if inverted:
        labels.insert(0, "overrides order buckets")
    kinds = {e.kind for e in group}
    base = INVERTED if inverted else (EXPLICIT if "explicit" in kinds else DATAFLOW)
    tooltip = "; ".join(e.reason for e in group)
    style = {**base, "label": _lines(*labels), "tooltip": _escape(tooltip)}
    if all(e.inferred for e in group):  # only the code shows it: dashed, as the legend says
        style["style"] = ",".join(s for s in (base.get("style"), "dashed") if s)
    return style


def _edge_reason(edge: EdgePlan, stage: StagePlan) -> str:
    if edge.kind == "dataflow":
        return f"{edge.key or 'dataflow'}{' (inferred)' if edge.inferred else ''}"
    names = {cb.name: cb for cb in stage.callbacks}
    target, source = names.get(edge.target), names.get(edge.source)
    if target is not None and edge.source in target.after:
        return "after"
    if source is not None and edge.target in source.before:
        return "before"
    return "explicit"


@dataclass(frozen=True)
class _Anchors:
    """Where edges between clusters start (the stage's last node) and end (its summary)."""

    tail: str
    head: str
    cluster: str


def _anchors(stage: StagePlan) -> _Anchors:
    last = callback_id(stage, len(stage.callbacks)) if stage.callbacks else stage_id(stage)
    return _Anchors(tail=last, head=stage_id(stage), cluster=f"cluster_{stage_id(stage)}")


def _between_stages(plan: ExecutionPlan) -> list[dict[str, str]]:
    """Stage edges (green and labelled where callbacks migrate along them), then invisible
    run-order edges between consecutive stages that no stage edge joins."""
    anchors = {s.name: _anchors(s) for s in plan.stages}

    def link(source: str, target: str, **attrs: str) -> dict[str, str]:
        a, b = anchors[source], anchors[target]
        return {"tail": a.tail, "head": b.head, "ltail": a.cluster, "lhead": b.cluster, **attrs}

    migrations = {(m.source, m.target): m for s in plan.stages for m in s.migrations}
    edges = []
    for edge in plan.stage_edges:
        if edge.source in anchors and edge.target in anchors:
            moved = migrations.pop((edge.source, edge.target), None)
            edges.append(link(edge.source, edge.target, **_stage_edge_style(moved)))
    for (source, target), moved in migrations.items():  # a migration always has its stage edge
        if source in anchors and target in anchors:
            edges.append(link(source, target, **_stage_edge_style(moved)))
    joined = {(e.source, e.target) for e in plan.stage_edges}
    for first, second in pairwise(plan.stages):
        if (first.name, second.name) not in joined:
            edges.append(link(first.name, second.name, style="invis"))
    return edges


def _stage_edge_style(migration: MigrationPlan | None) -> dict[str, str]:
    if migration is None:
        return dict(STAGE_EDGE)
    return {**MIGRATION, "label": _lines("migrates:", *migration.callbacks)}


# --- legend ----------------------------------------------------------------------------------
def _legend() -> graphviz.Digraph:
    legend = graphviz.Digraph(
        "cluster_legend",
        graph_attr={"label": "legend", "style": "dashed", "color": "#aaaaaa", "fontsize": "12"},
        node_attr={"fontsize": "9"},
    )
    samples = [
        ("legend_declared", "declared", _sample("declared")),
        ("legend_migrated", "migrated", _sample("migrated")),
        ("legend_default", "default (added by the compiler)", _sample("default")),
        ("legend_experiment", "experiment scope", _sample(scope=CallbackScope.experiment)),
        ("legend_master", "[master] node", _sample(node=CallbackNode.master)),
        ("legend_worker", "[worker] node", _sample(node=CallbackNode.worker)),
    ]
    for node_id, label, style in samples:
        legend.node(node_id, label, **style)
    for (tail, _, _), (head, _, _) in pairwise(samples):
        legend.edge(tail, head, style="invis")
    edges = [("explicit", {**EXPLICIT, "label": "after / before"}),
             ("dataflow", {**DATAFLOW, "label": "dataflow key"}),
             ("inferred", {**DATAFLOW, "style": "dashed", "label": "key inferred from code"}),
             ("inverted", {**INVERTED, "label": "overrides order buckets"}),
             ("stage", {**STAGE_EDGE, "label": "stage edge"}),
             ("migration", {**MIGRATION, "label": "stage edge, migrating callbacks"})]
    for name, attrs in edges:
        tail, head = f"legend_{name}_from", f"legend_{name}_to"
        legend.node(tail, "", shape="point", width="0.05")
        legend.node(head, "", shape="point", width="0.05")
        legend.edge(tail, head, **attrs)
    return legend


def _sample(origin: str = "declared", *, scope: CallbackScope = CallbackScope.stage,
            node: CallbackNode = CallbackNode.all) -> dict[str, str]:
    cb = CallbackPlan(name="sample", type="Sample", order=0, node=node, scope=scope,
                      origin=origin, declared_in="legend")  # type: ignore[arg-type]
    return node_style(cb)
