"""Geometry of an SVG drawn by Graphviz's `dot`: its size in pixels, and the edge labels edges cross

Text boxes are estimated from Helvetica's advance widths (narrow, wide, capital and other
glyphs); edge paths are sampled along their cubic Bézier segments.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

SVG = "{http://www.w3.org/2000/svg}"
PX_PER_PT = 96 / 72  # CSS pixels per point: an SVG's "pt" sizes shown at 96 dpi


def size_px(svg: str) -> tuple[float, float]:
    """Width and height from the root's ``width="…pt" height="…pt"``, in CSS pixels."""
    match = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    assert match is not None, "no pt size on the <svg> root"
    return float(match[1]) * PX_PER_PT, float(match[2]) * PX_PER_PT


@dataclass(frozen=True)
class Label:
    edge: str
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1

    def holds(self, x: float, y: float, inset: float = 0.0) -> bool:
        x0, y0, x1, y1 = self.box
        return x0 + inset < x < x1 - inset and y0 + inset < y < y1 - inset


def _width(text: str, size: float) -> float:
    em = sum(0.25 if c in "ijlt.,:;'|!()[] " else 0.33 if c in "fr*" else
             0.85 if c in "mwMW" else 0.67 if c.isupper() else 0.55 for c in text)
    return em * size


def _label(edge: str, text: ET.Element) -> Label:
    size = float(text.get("font-size", "9"))
    words = text.text or ""
    width, x, y = _width(words, size), float(text.get("x", 0)), float(text.get("y", 0))
    anchor = text.get("text-anchor")
    x0 = x - width / 2 if anchor == "middle" else (x - width if anchor == "end" else x)
    return Label(edge, words, (x0, y - 0.75 * size, x0 + width, y + 0.2 * size))


def _points(path: str) -> list[tuple[float, float]]:
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path)]
    knots = list(zip(numbers[::2], numbers[1::2], strict=False))
    points = []
    for i in range(0, len(knots) - 3, 3):
        (ax, ay), (bx, by), (cx, cy), (dx, dy) = knots[i:i + 4]
        for step in range(21):
            t = step / 20
            w = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t ** 3)
            points.append((w[0] * ax + w[1] * bx + w[2] * cx + w[3] * dx,
                           w[0] * ay + w[1] * by + w[2] * cy + w[3] * dy))
    return points


def edges(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "edge"]


def crossed_labels(svg: str) -> list[tuple[str, str, str]]:
    """(label text, its edge, the edge drawn through it) for every edge label a path crosses.

    A label may touch its own edge (Graphviz sets it beside the edge's middle): that edge
    counts only when it runs 2 pt or more inside the label's box.
    """
    labels, paths = [], []
    for group in edges(svg):
        title = group.findtext(f"{SVG}title", "")
        labels += [_label(title, t) for t in group.iter(f"{SVG}text")]
        paths += [(title, _points(p.get("d", ""))) for p in group.iter(f"{SVG}path")]
    return [(label.text, label.edge, title) for label in labels for title, points in paths
            if any(label.holds(x, y, 2.0 if title == label.edge else 0.0) for x, y in points)]


def edges_drawn_twice(svg: str) -> list[str]:
    """Edges with more than one path (Graphviz 2.43 can double a flat edge)."""
    return [g.findtext(f"{SVG}title", "") for g in edges(svg)
            if len(list(g.iter(f"{SVG}path"))) > 1]
