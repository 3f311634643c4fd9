"""The legend of a drawn plan: one HTML-like table node, drawn once below the stages.

Callback samples are table cells filled and bordered like the callbacks they stand for; edge
samples are coloured line glyphs beside their meaning, so no arrow can cross a label.
"""

from __future__ import annotations

from html import escape

from stagegraph.compiler.render_style import (
    DATAFLOW,
    EXPLICIT,
    INVERTED,
    MIGRATION,
    NODE_BORDER,
    ORIGIN_FILL,
    STAGE_EDGE,
)
from stagegraph.graph.enums import CallbackNode

LEGEND_ID = "legend"

# Line glyphs with an arrowhead: thin, dashed and heavy box-drawing strokes.
_LINE = "\u2500\u2500\u2500\u25b6"
_DASHED = "\u254c\u254c\u254c\u25b6"
_THICK = "\u2501\u2501\u2501\u25b6"


def legend_label(*, per_row: int, hubs: bool) -> str:
    """The legend as an HTML-like label (``<...>``): samples ``per_row`` to a row."""
    boxes = _callback_cells()
    rows = [_cells_row(boxes[i:i + per_row]) for i in range(0, len(boxes), per_row)]
    samples = _edge_samples(hubs)
    lines = ["&#160;&#160;&#160;".join(samples[i:i + per_row])
             for i in range(0, len(samples), per_row)]
    # Edge samples are one text cell (line breaks left-aligned), so nothing stretches them.
    text = '<br align="left"/>'.join(lines) + '<br align="left"/>'
    return ('<<table border="1" color="#aaaaaa" style="dashed" cellborder="0" cellspacing="0" '
            f'cellpadding="3"><tr><td align="left"><b>legend</b></td></tr>{"".join(rows)}'
            f'<tr><td align="left">{text}</td></tr></table>>')


def _cells_row(cells: list[str]) -> str:
    return (f'<tr><td align="left"><table border="0" cellspacing="4" cellpadding="3"><tr>'
            f'{"".join(cells)}</tr></table></td></tr>')


def _box(text: str, fill: str, *, color: str = "#444444", width: int = 1) -> str:
    return (f'<td bgcolor="{fill}" border="{width}" color="{color}">{escape(text)}</td>')


def _callback_cells() -> list[str]:
    master, worker = NODE_BORDER[CallbackNode.master], NODE_BORDER[CallbackNode.worker]
    double = ('<td border="1" color="#444444" cellpadding="1"><table border="0" cellborder="1" '
              f'cellpadding="2"><tr><td bgcolor="{ORIGIN_FILL["declared"]}" color="#444444">'
              'experiment scope</td></tr></table></td>')
    return [
        _box("declared", ORIGIN_FILL["declared"]),
        _box("migrated", ORIGIN_FILL["migrated"]),
        _box("default (added by the compiler)", ORIGIN_FILL["default"]),
        double,
        _box("[master] node", ORIGIN_FILL["declared"], color=master["color"], width=2),
        _box("[worker] node", ORIGIN_FILL["declared"], color=worker["color"], width=2),
    ]


def _line(glyph: str, color: str, text: str) -> str:
    return f'<font color="{color}">{glyph} {escape(text)}</font>'


def _edge_samples(hubs: bool) -> list[str]:
    samples = [
        _line(_LINE, EXPLICIT["color"], "after / before"),
        _line(_LINE, DATAFLOW["color"], "dataflow key"),
        _line(_DASHED, DATAFLOW["color"], "key inferred from code"),
        _line(_THICK, INVERTED["color"], "overrides order buckets"),
        _line(_THICK, STAGE_EDGE["color"], "stage edge"),
        _line(_THICK, MIGRATION["color"], "stage edge, migrating callbacks"),
    ]
    if hubs:
        samples.append(_line("(key.*)", DATAFLOW["color"],
                             "hub: its writers run before its readers"))
    return samples
