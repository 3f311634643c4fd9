"""Locate the compiler's diagnostics about a config file at the line and column they are about.

The compiler locates a diagnostic in the experiment (``stage 'train' > callback 'accuracy'``);
this maps that location to the config's position of it — the callback's key, the stage
parameter's value, the loader's key, the stage's key, else the experiment's name — where the
effective config has it (a value taken from ``defaults:`` is where the defaults write it).
A diagnostic about something the file does not say (a default callback the compiler added) is
located at its stage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stagegraph.compiler.diagnostics import Diagnostic, Location
from stagegraph.compiler.rules import RULES
from stagegraph.config.document import Document
from stagegraph.config.problems import Path, Position


@dataclass(frozen=True)
class LocatedDiagnostic:
    """A compiler diagnostic and the config position it is about, printed
    ``exp.yaml:14:7: error[SF503] stage 'train' > param 'main_metric': ...``."""

    diagnostic: Diagnostic
    position: Position

    @property
    def severity(self) -> Any:
        return self.diagnostic.severity

    @property
    def code(self) -> str:
        return self.diagnostic.code

    def __str__(self) -> str:
        d = self.diagnostic
        via = f" (set by {self.position.via})" if self.position.via else ""
        text = f"{self.position}: {d.severity.value}[{d.code}] {d.location}: {d.message}{via}"
        return f"{text}\n  hint: {d.hint}" if d.hint else text

    def to_json(self) -> dict[str, Any]:
        """The diagnostic as in the plan format, with ``file``, ``line`` and ``column``."""
        rule = RULES.get(self.diagnostic.code)
        return {**self.diagnostic.model_dump(mode="json"),
                "default_level": rule.default if rule is not None else None,
                "file": self.position.file, "line": self.position.line,
                "column": self.position.column}


def locate(diagnostics: Iterable[Diagnostic], document: Document) -> list[LocatedDiagnostic]:
    """Each diagnostic with its position in ``document``."""
    return [LocatedDiagnostic(d, position(d.location, document)) for d in diagnostics]


def position(location: Location, document: Document) -> Position:
    """Where ``document`` says what ``location`` is about."""
    stages = document.data.get("stages") if isinstance(document.data, dict) else None
    base: Path = ()
    if location.stage is not None and isinstance(stages, dict) and location.stage in stages:
        base = ("stages", location.stage)
    if location.callback is not None and base:
        callback = (*base, "callbacks", location.callback)
        if callback in document.keys:
            if location.param is not None and (*callback, location.param) in document.values:
                return document.value_at((*callback, location.param))
            return document.key_at(callback)
    if location.loader is not None and base:
        named = (*base, location.param or "", location.loader)  # fast_path: {valdi: false}
        if named in document.keys:
            return document.key_at(named)
        for loaders in ((*base, "loaders"), ("loaders",)):
            if (*loaders, location.loader) in document.keys:
                return document.key_at((*loaders, location.loader))
    if location.param is not None:
        for owner in ((base, ()) if base else ((),)):
            if (*owner, location.param) in document.values:
                return document.value_at((*owner, location.param))
    if base:
        return document.key_at(base)
    return document.key_at(("experiment",))
