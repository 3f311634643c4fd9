"""Graphviz emitter: draw an `ExecutionPlan` as a `graphviz.Digraph`, a pure function of the plan.

Stages are columns in run order (``columns`` to a row), each under a tab with its name; stage
edges join the tabs, grey, or green and labelled with the experiment-scoped callbacks that migrate
along them. In a stage's box, a note sums the stage up and the callbacks stand top to bottom in
plan order, numbered, joined by their hard edges: `render_edges` says what the compact detail
leaves out and bundles into hubs, `render_style` how things look. The legend is drawn once,
below the stages. Node ids are positional (``s0``, ``s0_note``, ``s0_c3``, ``s0_h1``), so any
callback or stage name — unicode, spaces, quotes, colons — only ever appears inside an escaped
label.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import graphviz

from stagegraph.compiler.diagnostics import did_you_mean
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, MigrationPlan, StagePlan
from stagegraph.compiler.render_edges import Hub, stage_edges
from stagegraph.compiler.render_legend import LEGEND_ID, legend_label
from stagegraph.compiler.render_style import (
    FONT,
    HUB,
    MIGRATION,
    NODE_TAG,
    STAGE_EDGE,
    edge_style,
    hub_edge_style,
    lines,
    node_style,
)
from stagegraph.graph.enums import CallbackScope, bucket_name

Detail = Literal["compact", "full"]
DETAILS: tuple[Detail, ...] = ("compact", "full")
# Stage edges within a row keep the tabs on one rank, left to right.
FLAT = {"minlen": "0", "weight": "10"}
# A node's edges leave it left to right in the order they are drawn, so a long edge does not
# cross its neighbours' labels. (Only nodes inside stages: with Graphviz 2.43, a flat stage edge
# next to an ordered node can be drawn twice.)
ORDERED = {"ordering": "out"}


def to_graphviz(plan: ExecutionPlan, *, detail: Detail = "compact", stage: str | None = None,
                columns: int = 4) -> graphviz.Digraph:
    """The plan as a `graphviz.Digraph`; ``.source`` is the DOT text, ``.pipe('svg')`` draws it.

    ``detail="compact"`` (the default) leaves out edges a longer chain implies and bundles
    fan-in through hub nodes; ``"full"`` draws every hard edge with every reason. ``stage``
    draws that stage alone (a `ValueError` names the stages when it has none by that name);
    ``columns`` is how many stages stand side by side before the next row starts.

    >>> import stagegraph as sg
    >>> exp = sg.Experiment("demo", model=object())
    >>> _ = exp.add_stage("train", loaders={"train": [], "valid": []})
    >>> "cluster_s0" in sg.compile(exp).to_graphviz().source
    True
    """
    if detail not in DETAILS:
        raise ValueError(f"detail {detail!r}: use one of {', '.join(DETAILS)}")
    stages = selected_stages(plan, stage)
    graph = graphviz.Digraph("plan", graph_attr=_graph_attrs(plan, stage),
                             node_attr={"fontname": FONT, "fontsize": "10"},
                             edge_attr={"fontname": FONT, "fontsize": "9"})
    hubs = False
    for s in stages:
        cluster, drawn = _stage_cluster(s, compact=detail == "compact")
        graph.subgraph(cluster)
        _stage_tab(graph, s)
        hubs = hubs or drawn
    for attrs in _between_stages(plan, stages, max(columns, 1)):
        graph.edge(attrs.pop("tail"), attrs.pop("head"), **attrs)
    wide = min(len(stages), max(columns, 1)) >= 3
    _add_legend(graph, stages, per_row=7 if wide else 3, hubs=hubs)
    return graph


def selected_stages(plan: ExecutionPlan, name: str | None) -> tuple[StagePlan, ...]:
    """Every stage, or the one named ``name`` (a `ValueError` lists the stages otherwise)."""
    if name is None:
        return plan.stages
    for stage in plan.stages:
        if stage.name == name:
            return (stage,)
    known = ", ".join(repr(s.name) for s in plan.stages) or "none"
    hint = did_you_mean(name, [s.name for s in plan.stages])
    raise ValueError(f"experiment {plan.experiment!r} has no stage {name!r} to draw; its "
                     f"stages: {known}.{hint}")


def _graph_attrs(plan: ExecutionPlan, stage: str | None) -> dict[str, str]:
    """The title (on two lines above one stage alone, which draws narrow) and the spacing."""
    name = f"experiment {plan.experiment!r}"
    title = (graphviz.escape(f"{name} · {_facts(plan)}") if stage is None else
             lines(f"{name} · stage {stage!r} alone", _facts(plan)))
    return {"rankdir": "TB", "fontname": FONT, "label": title,
            "labelloc": "t", "nodesep": "0.25", "ranksep": "0.3", "newrank": "true"}


def _facts(plan: ExecutionPlan) -> str:
    counts = f"{len(plan.errors)} error(s), {len(plan.warnings)} warning(s)"
    return f"rank {plan.rank.value} · device {plan.device} · {counts} · hash {plan.hash[:12]}"


# --- ids -------------------------------------------------------------------------------------
def stage_id(stage: StagePlan) -> str:
    """The stage's tab, above its column: stage edges join the tabs."""
    return f"s{stage.index}"


def note_id(stage: StagePlan) -> str:
    """The note that sums the stage up, at the top of its cluster."""
    return f"s{stage.index}_note"


def callback_id(stage: StagePlan, position: int) -> str:
    """Unique per stage and across the graph: ``s<stage index>_c<position from 1>``."""
    return f"s{stage.index}_c{position}"


def hub_id(stage: StagePlan, position: int) -> str:
    return f"s{stage.index}_h{position}"


def last_id(stage: StagePlan) -> str:
    """The bottom of a stage's column: its last callback, else its note."""
    return callback_id(stage, len(stage.callbacks)) if stage.callbacks else note_id(stage)


# --- a stage ---------------------------------------------------------------------------------
def _stage_cluster(stage: StagePlan, *, compact: bool) -> tuple[graphviz.Digraph, bool]:
    """The stage's cluster (its note, callbacks, hubs and edges), and whether it holds a hub."""
    cluster = graphviz.Digraph(f"cluster_{stage_id(stage)}",
                               graph_attr={"label": "", "style": "rounded", "color": "#888888"})
    cluster.node(note_id(stage), lines(*_stage_summary(stage, compact=compact)), shape="note",
                 style="filled", fillcolor="#fffbe6", color="#b59f3b")
    ids = _draw_callbacks(cluster, stage, compact=compact)
    drawn = stage_edges(stage, compact=compact)
    # The invisible chain keeps the callbacks in plan order, top to bottom; a hub stands in it
    # just above its first reader.
    for tail, head in pairwise([note_id(stage), *_column(stage, ids, drawn.hubs)]):
        cluster.edge(tail, head, style="invis", weight="10")
    inverted = {(e.source, e.target) for e in stage.inversions}
    for (source, target), group in drawn.pairs.items():
        style = edge_style(group, stage, inverted=(source, target) in inverted, short=compact)
        cluster.edge(ids[source], ids[target], **style)
    for n, hub in enumerate(drawn.hubs, 1):
        _draw_hub(cluster, hub_id(stage, n), hub, ids)
    return cluster, bool(drawn.hubs)


def _draw_callbacks(cluster: graphviz.Digraph, stage: StagePlan, *,
                    compact: bool) -> dict[str, str]:
    """The stage's callbacks as nodes (compact: two lines, the rest in the tooltip); their ids
    by name."""
    ids = {cb.name: callback_id(stage, i) for i, cb in enumerate(stage.callbacks, 1)}
    for i, cb in enumerate(stage.callbacks, 1):
        label = _compact_label(i, cb) if compact else _callback_label(i, cb)
        extra = {"tooltip": graphviz.escape(" · ".join(_callback_label(i, cb)))} if compact else {}
        cluster.node(ids[cb.name], lines(*label), **node_style(cb), **extra, **ORDERED)
    return ids


def _stage_tab(graph: graphviz.Digraph, stage: StagePlan) -> None:
    """The stage's name above its cluster; an invisible edge keeps it there."""
    graph.node(stage_id(stage), graphviz.escape(f"stage {stage.index + 1}: {stage.name}"),
               shape="box", style="rounded,bold", color="#888888", fontsize="14")
    graph.edge(stage_id(stage), note_id(stage), style="invis", weight="100")


def _column(stage: StagePlan, ids: dict[str, str], hubs: tuple[Hub, ...]) -> list[str]:
    """Callback ids in plan order, each hub's id inserted before its first reader."""
    before: dict[str, list[str]] = {}
    for n, hub in enumerate(hubs, 1):
        first = min(hub.readers, key=list(ids).index)
        before.setdefault(first, []).append(hub_id(stage, n))
    return [node for name, cb in ids.items() for node in [*before.get(name, []), cb]]


def _draw_hub(cluster: graphviz.Digraph, node: str, hub: Hub, ids: dict[str, str]) -> None:
    about = (f"{hub.label}: written by {', '.join(hub.writers)}; read by "
             f"{', '.join(hub.readers)}")
    cluster.node(node, lines(hub.label), **HUB, **ORDERED, tooltip=graphviz.escape(about))
    for writer in hub.writers:
        cluster.edge(ids[writer], node, **hub_edge_style(hub, writer=writer))
    for reader in hub.readers:
        cluster.edge(node, ids[reader], **hub_edge_style(hub, reader=reader))


def _stage_summary(stage: StagePlan, *, compact: bool) -> list[str]:
    loaders = ", ".join(ld.name for ld in stage.loaders) or "none"
    migration = "" if stage.migrate_from_previous_stage else "migration off"
    goal = "min" if stage.minimize_metric else "max"
    if compact:
        kind = "inference" if stage.is_infer else (
            f"{goal} {stage.main_metric} on {stage.valid_loader}")
        return [f"{stage.num_epochs} epoch(s) · {kind}", f"loaders: {loaders}",
                stage.handler.type, migration]
    kind = "inference" if stage.is_infer else (
        f"main metric {stage.main_metric} ({goal}), valid loader {stage.valid_loader}")
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


def _compact_label(position: int, cb: CallbackPlan) -> list[str]:
    """Two short lines: fill and border say origin, scope and node (the legend says how)."""
    short = cb.type.rsplit(".", 1)[-1]
    tag = f" {NODE_TAG[cb.node]}" if NODE_TAG[cb.node] else ""
    moved = f" · from {cb.source_stage}" if cb.origin == "migrated" else ""
    return [f"{position}. {cb.name}{tag}", f"{short} ({cb.order}){moved}"]


# --- between stages --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Where each drawn stage stands: its row and column."""

    place: dict[str, tuple[int, int]]

    def same_row(self, a: str, b: str) -> bool:
        return self.place[a][0] == self.place[b][0]

    def neighbours(self, a: str, b: str) -> bool:
        """``b`` stands right next to ``a``, on its right."""
        return self.same_row(a, b) and self.place[b][1] == self.place[a][1] + 1


def _between_stages(plan: ExecutionPlan, stages: tuple[StagePlan, ...],
                    columns: int) -> list[dict[str, str]]:
    """Stage edges between the tabs (flat within a row), invisible run-order edges between
    neighbours no stage edge joins, and invisible edges that start each row below the last."""
    layout = _Layout({s.name: divmod(i, columns) for i, s in enumerate(stages)})
    tabs = {s.name: stage_id(s) for s in stages}
    migrations = {(m.source, m.target): m for s in plan.stages for m in s.migrations}
    pairs = [p for p in dict.fromkeys([(e.source, e.target) for e in plan.stage_edges]
                                      + list(migrations)) if p[0] in tabs and p[1] in tabs]
    # Labels only when every stage edge joins neighbouring tabs: an edge that arcs over a tab
    # would run through them.
    labelled = all(layout.neighbours(*p) for p in pairs)
    edges = [{"tail": tabs[source], "head": tabs[target],
              **_stage_edge_style(migrations.get((source, target)), labelled=labelled),
              **(FLAT if layout.same_row(source, target) else {})}
             for source, target in pairs]
    for first, second in pairwise(stages):
        if (first.name, second.name) not in pairs and layout.same_row(first.name, second.name):
            edges.append({"tail": tabs[first.name], "head": tabs[second.name], "style": "invis",
                          **FLAT})
    for above, below in zip(stages, stages[columns:], strict=False):
        edges.append({"tail": last_id(above), "head": stage_id(below), "style": "invis"})
    return edges


def _stage_edge_style(migration: MigrationPlan | None, *, labelled: bool) -> dict[str, str]:
    """Grey, or green where callbacks migrate, labelled with them or not (the tooltip always
    names them, and so do the migrated callbacks, with their source stage)."""
    if migration is None:
        return dict(STAGE_EDGE)
    names = lines("migrates:", *migration.callbacks)
    tooltip = graphviz.escape("migrates: " + ", ".join(migration.callbacks))
    return {**MIGRATION, "tooltip": tooltip, **({"label": names} if labelled else {})}


def _add_legend(graph: graphviz.Digraph, stages: tuple[StagePlan, ...], *, per_row: int,
                hubs: bool) -> None:
    """The legend once, below every stage."""
    graph.node(LEGEND_ID, legend_label(per_row=per_row, hubs=hubs), shape="plain",
               fontsize="9")
    for stage in stages:
        graph.edge(last_id(stage), LEGEND_ID, style="invis")
