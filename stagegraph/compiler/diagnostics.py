"""Diagnostics: every problem the compiler finds, with a stable code, a location and a hint."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import Enum

from pydantic import BaseModel, ConfigDict


class Severity(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"


class Frozen(BaseModel):
    """Base of every IR model: immutable, and unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Location(Frozen):
    """Where a problem is: ``stage 'finetune' > callback 'optimizer' > key 'metric.loss'``."""

    stage: str | None = None
    callback: str | None = None
    loader: str | None = None
    param: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        parts = [f"{field} {value!r}" for field, value in self._parts()]
        return " > ".join(parts) if parts else "experiment"

    def _parts(self) -> list[tuple[str, str]]:
        fields = ("stage", "callback", "loader", "param", "key")
        return [(f, getattr(self, f)) for f in fields if getattr(self, f) is not None]


class Diagnostic(Frozen):
    """One problem: ``code`` (``SF###``), ``severity``, ``location``, ``message`` and ``hint``."""

    code: str
    severity: Severity
    location: Location
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.severity.value}[{self.code}] {self.location}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


def did_you_mean(name: object, candidates: Iterable[str]) -> str:
    """`` Did you mean 'valid'?`` when a close candidate exists, else ``''``."""
    if not isinstance(name, str):
        return ""
    pool = list(dict.fromkeys(candidates))
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not matches and len(name) >= 3:
        lowered = name.lower()
        matches = [c for c in pool if len(c) >= 3 and (
            c.lower().startswith(lowered) or lowered.startswith(c.lower()))]
    return f" Did you mean {matches[0]!r}?" if matches else ""


class DiagnosticList(tuple[Diagnostic, ...]):
    """The diagnostics of a plan: a tuple that notebooks display as a table.

    ``plan.diagnostics``, ``plan.errors`` and ``plan.warnings`` are one; it prints and compares
    as a plain tuple of the same diagnostics, and slicing it gives a plain tuple.
    """

    __slots__ = ()

    def _repr_markdown_(self) -> str:
        from stagegraph.compiler.display import diagnostics_markdown

        return diagnostics_markdown(self)

    def _repr_html_(self) -> str:
        from stagegraph.compiler.display import diagnostics_html

        return diagnostics_html(self)


class Diagnostics:
    """A collector the passes append to; nothing is raised."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(
        self,
        code: str,
        severity: Severity,
        message: str,
        hint: str = "",
        **location: str | None,
    ) -> None:
        self.items.append(
            Diagnostic(code=code, severity=severity, location=Location(**location),
                       message=message, hint=hint)
        )

    def error(self, code: str, message: str, hint: str = "", **location: str | None) -> None:
        self.add(code, Severity.error, message, hint, **location)

    def warning(self, code: str, message: str, hint: str = "", **location: str | None) -> None:
        self.add(code, Severity.warning, message, hint, **location)

    def info(self, code: str, message: str, hint: str = "", **location: str | None) -> None:
        self.add(code, Severity.info, message, hint, **location)

    def sorted(self, stage_rank: dict[str, int], callback_rank: dict[tuple[str, str], int]
               ) -> DiagnosticList:
        """Sorted by location (stages and callbacks in declaration order), then code."""

        def key(d: Diagnostic) -> tuple[object, ...]:
            loc = d.location
            stage = -1 if loc.stage is None else stage_rank.get(loc.stage, len(stage_rank))
            cb = -1 if loc.callback is None else callback_rank.get(
                (loc.stage or "", loc.callback), 1 << 30)
            return (stage, cb, loc.loader or "", loc.param or "", loc.key or "", d.code,
                    d.message)

        unique = list(dict.fromkeys(self.items))
        return DiagnosticList(sorted(unique, key=key))
