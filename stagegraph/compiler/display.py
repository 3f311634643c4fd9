"""Notebook displays: plans, stages, explanations and diagnostics as Markdown and HTML strings.

Each object is described once as a few blocks (paragraphs, bullet lists, tables of inline text and
code); two small renderers turn the blocks into Markdown or HTML, escaping every value. Pure
functions, no IPython: the objects' ``_repr_markdown_`` / ``_repr_html_`` call them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stagegraph.compiler.diagnostics import Diagnostic, Severity
from stagegraph.graph.enums import bucket_name

if TYPE_CHECKING:
    from stagegraph.compiler.explain import Explanation
    from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, StagePlan


@dataclass(frozen=True)
class Code:
    """Inline code: a name, a key, a value."""

    text: str


@dataclass(frozen=True)
class Bold:
    text: str


Span = str | Code | Bold
Inline = tuple[Span, ...]


@dataclass(frozen=True)
class Para:
    spans: Inline


@dataclass(frozen=True)
class Items:
    """A bullet list."""

    items: tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]


Block = Para | Items | Table

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}#|~!])")


# --- the objects, as blocks ------------------------------------------------------------------
def explanation_blocks(explanation: Explanation) -> list[Block]:
    """The answer as a headline, then the chain of edges (or the reasons, when unordered)."""
    e = explanation
    if e.relation in ("before", "after"):
        a, b = (e.first, e.second) if e.relation == "before" else (e.second, e.first)
        head: Inline = (Code(a), " ", Bold("runs before"), " ", Code(b), " in stage ",
                        Code(e.stage), f", through {len(e.chain)} hard edge(s):")
        notes = [_note(line) for line in e.lines[1:]] + [""] * len(e.chain)
        rows = tuple(_cells(str(i), Code(edge.source), Code(edge.target), edge.kind,
                            edge.reason, notes[i - 1])
                     for i, edge in enumerate(e.chain, 1))
        return [Para(head), Table(("step", "from", "to", "kind", "why", "note"), rows)]
    if e.relation == "unordered":
        head = (Code(e.first), " and ", Code(e.second), " ", Bold("are not ordered"),
                " by any chain of hard edges in stage ", Code(e.stage), ":")
    else:
        head = (Bold("cannot explain"), " ", Code(e.first), " and ", Code(e.second),
                " in stage ", Code(e.stage), ":")
    lines = e.lines[1:] if e.relation == "unordered" else e.lines
    return [Para(head), Items(tuple((line.strip(),) for line in lines))]


def stage_blocks(stage: StagePlan) -> list[Block]:
    """The stage's settings, loaders and migrations, then its callbacks in execution order."""
    blocks: list[Block] = [Para(_stage_head(stage))]
    facts: list[Inline] = []
    if stage.loaders:
        loaders = [(Code(ld.name), f" ({ld.kind.value})") for ld in stage.loaders]
        facts.append(("loaders: ", *_flat(", ", loaders)))
    facts.append(("batch handler: ", Code(stage.handler.type)))
    facts.extend(("migrated from ", Code(m.source), ": ", *_joined(m.callbacks))
                 for m in stage.migrations)
    if stage.check_run or stage.precision != "fp32" or not stage.fast_path:
        facts.append((f"check_run={stage.check_run}, precision={stage.precision}, "
                       f"fast_path={stage.fast_path}",))
    facts.append((f"{len(stage.edges)} hard edge(s), {len(stage.inversions)} overriding the "
                  "order buckets",))
    blocks.append(Items(tuple(facts)))
    rows = tuple(_callback_row(i, cb) for i, cb in enumerate(stage.callbacks, 1))
    blocks.append(Table(("#", "callback", "type", "order", "scope", "node", "origin"), rows))
    return blocks


def plan_blocks(plan: ExecutionPlan) -> list[Block]:
    """A summary: the experiment, one row per stage with its callbacks in order, diagnostics."""
    head: Inline = ("Plan for experiment ", Code(plan.experiment),
                    f": {len(plan.stages)} stage(s), seed {plan.seed}, device ", Code(plan.device),
                    f", rank {plan.rank.value}, hash ", Code(plan.hash[:12] or "-"))
    rows = tuple(
        _cells(str(s.index + 1), Code(s.name), _joined(s.after), str(s.num_epochs),
               "inference" if s.is_infer else _metric(s), _joined(ld.name for ld in s.loaders),
               _joined(cb.name for cb in s.callbacks))
        for s in plan.stages)
    table = Table(("#", "stage", "after", "epochs", "main metric", "loaders",
                   "callbacks in order"), rows)
    return [Para(head), table, *diagnostics_blocks(plan.diagnostics)]


def diagnostics_blocks(diagnostics: Sequence[Diagnostic]) -> list[Block]:
    """A count by severity, then one row per diagnostic."""
    if not diagnostics:
        return [Para(("No diagnostics: the plan is clean.",))]
    counts = {s: sum(d.severity is s for d in diagnostics) for s in Severity}
    head = (Bold(f"{len(diagnostics)} diagnostic(s)"),
            f": {counts[Severity.error]} error(s), {counts[Severity.warning]} warning(s), "
            f"{counts[Severity.info]} info")
    rows = tuple(_cells(d.severity.value, Code(d.code), str(d.location), _prose(d.message),
                        _prose(d.hint)) for d in diagnostics)
    return [Para(head), Table(("severity", "code", "where", "message", "hint"), rows)]


def _stage_head(stage: StagePlan) -> Inline:
    kind = "inference" if stage.is_infer else (
        f"main metric {_metric(stage)}, valid loader {stage.valid_loader!r}")
    after: Inline = (", after ", *_joined(stage.after)) if stage.after else ()
    return (Bold(f"Stage {stage.index + 1}"), " ", Code(stage.name),
            f": {stage.num_epochs} epoch(s), {kind}", *after)


def _callback_row(i: int, cb: CallbackPlan) -> tuple[Inline, ...]:
    origin = cb.origin if cb.source_stage is None else f"{cb.origin} from {cb.source_stage!r}"
    return _cells(str(i), Code(cb.name), cb.type, bucket_name(cb.order), cb.scope.value,
                  cb.node.value, origin)


def _metric(stage: StagePlan) -> str:
    return f"{stage.main_metric} ({'min' if stage.minimize_metric else 'max'})"


def _joined(names: Iterable[str]) -> Inline:
    return _flat(", ", ((Code(name),) for name in names))


def _flat(separator: str, parts: Iterable[Inline]) -> Inline:
    spans: list[Span] = []
    for part in parts:
        spans.extend((separator, *part) if spans else part)
    return tuple(spans)


def _cells(*cells: Span | Inline) -> tuple[Inline, ...]:
    return tuple(cell if isinstance(cell, tuple) else (cell,) for cell in cells)


def _prose(text: str) -> Inline:
    """A message whose ```backquoted``` parts (commands, code) become code spans."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backquote: leave the text as it is
        return (text,)
    return tuple(Code(part) if i % 2 else part for i, part in enumerate(parts) if part)


def _note(line: str) -> str:
    """The ``[overrides order buckets: ...]`` note `explain` appends to a chain line, if any."""
    _, bracket, note = line.rpartition("  [")
    return note.removesuffix("]") if bracket and line.endswith("]") else ""


# --- the renderers -----------------------------------------------------------------------------
def to_markdown(blocks: Iterable[Block]) -> str:
    """Blocks as Markdown: text escaped, so a name like ``metric.*`` stays literal."""
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


def to_html(blocks: Iterable[Block]) -> str:
    """Blocks as an HTML fragment, every value escaped."""
    return '<div class="stagegraph">\n' + "\n".join(_html_block(b) for b in blocks) + "\n</div>"


def _md_block(block: Block) -> str:
    if isinstance(block, Para):
        return _md_inline(block.spans)
    if isinstance(block, Items):
        return "\n".join(f"- {_md_inline(item)}" for item in block.items)
    lines = ["| " + " | ".join(_md_escape(h) for h in block.headers) + " |",
             "|" + "---|" * len(block.headers)]
    lines.extend("| " + " | ".join(_md_inline(c) or " " for c in row) + " |" for row in block.rows)
    return "\n".join(lines)


def _md_inline(spans: Inline) -> str:
    return "".join(_md_span(s) for s in spans).replace("\n", " ")


def _md_span(span: Span) -> str:
    if isinstance(span, Code):
        tick = "``" if "`" in span.text else "`"
        pad = " " if tick == "``" else ""
        return f"{tick}{pad}{span.text.replace('|', chr(92) + '|')}{pad}{tick}"
    if isinstance(span, Bold):
        return f"**{_md_escape(span.text)}**"
    return _md_escape(span)


def _md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _html_block(block: Block) -> str:
    if isinstance(block, Para):
        return f"<p>{_html_inline(block.spans)}</p>"
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in block.items) + "</ul>"
    left = ' style="text-align:left"'
    head = "".join(f"<th{left}>{html.escape(h)}</th>" for h in block.headers)
    body = "".join("<tr>" + "".join(f"<td{left}>{_html_inline(c)}</td>" for c in row) + "</tr>"
                   for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_inline(spans: Inline) -> str:
    return "".join(_html_span(s) for s in spans)


def _html_span(span: Span) -> str:
    if isinstance(span, Code):
        return f"<code>{html.escape(span.text)}</code>"
    if isinstance(span, Bold):
        return f"<strong>{html.escape(span.text)}</strong>"
    return html.escape(span)


# --- the entry points the objects call ---------------------------------------------------------
def explanation_markdown(explanation: Explanation) -> str:
    return to_markdown(explanation_blocks(explanation))


def explanation_html(explanation: Explanation) -> str:
    return to_html(explanation_blocks(explanation))


def stage_markdown(stage: StagePlan) -> str:
    return to_markdown(stage_blocks(stage))


def stage_html(stage: StagePlan) -> str:
    return to_html(stage_blocks(stage))


def plan_markdown(plan: ExecutionPlan) -> str:
    return to_markdown(plan_blocks(plan))


def plan_html(plan: ExecutionPlan, svg: str | None = None) -> str:
    """The summary, and the diagram under it when ``svg`` (the plan drawn by ``dot``) is given."""
    summary = to_html(plan_blocks(plan))
    if svg is None:
        return summary
    start = svg.find("<svg")
    return f"{summary}\n{svg[start:] if start >= 0 else html.escape(svg)}"


def diagnostics_markdown(diagnostics: Sequence[Diagnostic]) -> str:
    return to_markdown(diagnostics_blocks(diagnostics))


def diagnostics_html(diagnostics: Sequence[Diagnostic]) -> str:
    return to_html(diagnostics_blocks(diagnostics))
