"""How a drawn plan looks: the colours and shapes of callbacks, hubs and edges, and their labels.

Fill colour shows a callback's origin, a double border its experiment scope, and a coloured
border plus a tag its node (master / worker). Hard edges are blue (dataflow, labelled with the
key), black (``after`` / ``before``), dashed where only a callback's code shows the key, and bold
red where they override the order buckets; stage edges are grey, or green where callbacks migrate.
"""

from __future__ import annotations

import graphviz

from stagegraph.compiler.plan import CallbackPlan, EdgePlan, StagePlan
from stagegraph.compiler.render_edges import Hub
from stagegraph.graph.enums import CallbackNode, CallbackScope

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
HUB = {"shape": "ellipse", "style": "dashed", "color": "#1a5fb4", "fontcolor": "#1a5fb4",
       "fontsize": "9", "height": "0.3", "margin": "0.04,0.02"}


def node_style(cb: CallbackPlan) -> dict[str, str]:
    """Fill by origin, double border for experiment scope, border colour and width by node."""
    style = {"shape": "box", "style": "rounded,filled", "fillcolor": ORIGIN_FILL[cb.origin]}
    if cb.scope is CallbackScope.experiment:
        style["peripheries"] = "2"
    return {**style, **NODE_BORDER[cb.node]}


def edge_style(group: list[EdgePlan], stage: StagePlan, *, inverted: bool,
               short: bool = False) -> dict[str, str]:
    """One drawn edge for every hard edge between a pair: its reasons as label lines (``short``:
    the first reason and how many more; the tooltip keeps them all)."""
    labels = list(dict.fromkeys(_edge_reason(e, stage) for e in group))
    if short and len(labels) > 1:
        labels = [f"{labels[0]} +{len(labels) - 1}"]
    if inverted:
        labels.insert(0, "overrides order buckets")
    kinds = {e.kind for e in group}
    base = INVERTED if inverted else (EXPLICIT if "explicit" in kinds else DATAFLOW)
    tooltip = "; ".join(e.reason for e in group)
    style = {**base, "label": lines(*labels), "tooltip": graphviz.escape(tooltip)}
    if all(e.inferred for e in group):  # only the code shows it: dashed, as the legend says
        style["style"] = ",".join(s for s in (base.get("style"), "dashed") if s)
    return style


def hub_edge_style(hub: Hub, *, writer: str = "", reader: str = "") -> dict[str, str]:
    """An unlabelled edge from a writer into a hub, or out to a reader; the tooltip keeps
    the reasons of the hard edges it stands for."""
    reasons = [e.reason for e in hub.edges if writer == e.source or reader == e.target]
    return {**DATAFLOW, "tooltip": graphviz.escape("; ".join(dict.fromkeys(reasons)))}


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


def lines(*parts: str) -> str:
    """Escaped lines joined by DOT's centred line break."""
    return graphviz.nohtml("\\n".join(graphviz.escape(p) for p in parts if p))
