"""`ModelSummary`: a table of the model's parameters per top-level module at each stage start."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder

_MB = 1024 * 1024
#: The folder under the logdir that holds the tables, one file per stage.
FOLDER = "model_summary"


@dataclass(frozen=True)
class SummaryRow:
    """One top-level module: its parameter counts and their size in megabytes (MiB)."""

    name: str
    kind: str
    params: int
    trainable: int
    size_mb: float

    @property
    def frozen(self) -> int:
        return self.params - self.trainable


def summarize(model: Any) -> list[SummaryRow]:
    """One row per top-level module of ``model`` (a module, or a dict of them), then a total row.

    Parameters the model holds directly (not in a child) form a row named ``(own)``.
    """
    rows = [_row(name, module, recurse) for name, module, recurse in _parts(model)]
    total = SummaryRow("total", "", sum(r.params for r in rows), sum(r.trainable for r in rows),
                       sum(r.size_mb for r in rows))
    return [*rows, total]


def _parts(model: Any, prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    if isinstance(model, Mapping):
        for key, module in model.items():
            yield from _parts(module, f"{prefix}{key}.")
        return
    from stagegraph.runtime.callbacks.files import unwrap

    model = unwrap(model)
    children = list(model.named_children())
    for name, child in children:
        yield f"{prefix}{name}", child, True
    if any(True for _ in model.parameters(recurse=False)) or not children:
        yield f"{prefix}(own)" if children else prefix.rstrip(".") or "model", model, not children


def _row(name: str, module: Any, recurse: bool) -> SummaryRow:
    params = list(module.parameters(recurse=recurse))
    return SummaryRow(
        name=name, kind=type(module).__name__, params=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        size_mb=sum(p.numel() * p.element_size() for p in params) / _MB)


def format_table(rows: list[SummaryRow]) -> str:
    """The rows as an aligned text table, numbers right-aligned with thousands separators."""
    header = ("module", "type", "params", "trainable", "frozen", "size (MB)")
    body = [(r.name, r.kind, f"{r.params:,}", f"{r.trainable:,}", f"{r.frozen:,}",
             f"{r.size_mb:.3f}") for r in rows]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *map(line, body[:-1]), rule, line(body[-1])])


class ModelSummary(Callback):
    """At each stage start, prints a table of the model's parameters per top-level module.

    Columns: module, type, parameters, trainable, frozen and size in MB (MiB, of the
    parameters), then a total. Printed to ``file``; by default to the stage's console logger's
    ``file`` if it has one, else where the console's progress goes: ``sys.stderr``, so stdout
    stays clean, or ``sys.stdout`` in a Jupyter kernel (a notebook shows stderr on a red
    ground). When the run has a logdir, also written to
    ``{logdir}/model_summary/{stage}.txt`` (a folder of its own, which it claims, so an
    overwritten run's summaries are set aside with the rest of its files). ``tables`` keeps the
    rows of each stage by name. It runs after the stage's components are built (a
    `FreezeCallback` freezes before the optimizer is built, so frozen modules show as frozen).
    Master rank only.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    kind: ClassVar[str | None] = "model_summary"
    claims: ClassVar[tuple[str, ...]] = (f"files:{FOLDER}/",)

    def __init__(self, file: TextIO | None = None, **declarations: Any) -> None:
        super().__init__(**declarations)
        self.file = file
        #: The rows of each stage's table, by stage name.
        self.tables: dict[str, list[SummaryRow]] = {}

    def on_stage_start(self, runner: Any) -> None:
        if runner.model is None:
            return
        rows = summarize(runner.model)
        self.tables[runner.stage_name] = rows
        text = f"[{runner.stage_name}] model summary:\n{format_table(rows)}"
        print(text, file=self._stream(runner), flush=True)
        if runner.logdir is not None:
            path = Path(runner.logdir) / FOLDER / f"{runner.stage_name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(format_table(rows) + "\n", encoding="utf-8")

    def _stream(self, runner: Any) -> TextIO:
        """``file``, else the stage's console logger's stream, else the console's default."""
        if self.file is not None:
            return self.file
        for callback in (getattr(runner, "callbacks", None) or {}).values():
            stream = getattr(callback, "file", None)
            if getattr(callback, "kind", None) == "console" and stream is not None:
                return stream
        return sys.stdout if type(sys.stdout).__module__.startswith("ipykernel") else sys.stderr

    def __repr__(self) -> str:
        return "ModelSummary()"
