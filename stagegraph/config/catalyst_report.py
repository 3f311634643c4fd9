"""What the Catalyst converter knows while it works, and the diagnostics it reports.

Every diagnostic is located where the Catalyst file writes the key or value it is about
(``config.yml:12:5``), and the converter also leaves a short ``TODO(SFxxx)`` note at the place of
the output it concerns, when there is one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from stagegraph.config.document import Document
from stagegraph.config.problems import ConfigProblem, Path, dotted


class Context:
    """The document converted, the problems found so far, and facts gathered on the way."""

    def __init__(self, document: Document, module: str | None) -> None:
        self.document = document
        #: The Python module of the Catalyst ``expdir`` (``None``: the config names none).
        self.module = module
        self.problems: list[ConfigProblem] = []
        self._seen: set[tuple[str, str]] = set()
        #: Prefixes of the accuracy callbacks: Catalyst names top-1 ``{prefix}01``.
        self.accuracy_prefixes: set[str] = set()
        #: Whether Catalyst's OptimizerCallback decoupled weight decay (its default).
        self.decoupled = True

    # --- reporting --------------------------------------------------------------------------
    def warning(self, code: str, path: Path, message: str, hint: str = "", *,
                value: bool = False) -> str:
        """Report ``code`` at the key (or ``value``) at ``path``; returns the output's note."""
        self._add(code, "warning", path, message, hint, value)
        return f"TODO({code}): {message}"

    def info(self, code: str, path: Path, message: str, hint: str = "", *,
             value: bool = False) -> str:
        """A note at the key (or ``value``) at ``path``; returns the output's note."""
        self._add(code, "info", path, message, hint, value)
        return f"{code}: {message}"

    def _add(self, code: str, severity: str, path: Path, message: str, hint: str,
             value: bool) -> None:
        position = (self.document.value_at(path) if value else self.document.key_at(path))
        if (code, message) not in self._seen:  # a shared setting merged into several stages
            self._seen.add((code, message))
            self.problems.append(ConfigProblem.at(code, message, hint, position,
                                                  severity=severity))

    def unknown(self, path: Path, known: Iterable[str], what: str) -> str:
        """SF857 for the key at ``path``, with a did-you-mean among ``known``."""
        key = str(path[-1])
        close = difflib.get_close_matches(key, list(known), n=1)
        hint = (f"did you mean {close[0]!r}?" if close
                else f"{what} takes {', '.join(sorted(known))}")
        return self.warning("SF857", path, f"{dotted(path)}: {key!r} is not a Catalyst 20.x "
                           f"setting the converter knows; left out", hint)

    def wrong(self, path: Path, expected: str) -> str:
        """SF858: the value at ``path`` is not what Catalyst takes there."""
        return self.warning("SF858", path, f"{dotted(path)} should be {expected}; left out",
                           "fix the Catalyst file (Catalyst would fail on it too)", value=True)

    # --- facts --------------------------------------------------------------------------------
    def metric(self, name: Any) -> Any:
        """A metric name as stagegraph spells it: Catalyst's ``accuracy01`` is ``accuracy``."""
        if isinstance(name, str) and name.endswith("01") and name[:-2] in self.accuracy_prefixes:
            return name[:-2]
        return name

    def user_target(self, name: str) -> str:
        """Where a name the user registered with Catalyst is assumed to be defined."""
        return f"{self.module}.{name}" if self.module else f"TODO.{name}"

    def sorted_problems(self) -> list[ConfigProblem]:
        return sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0, p.code))


def deep_merge(base: Any, own: Any) -> Any:
    """Catalyst's merge of shared and stage settings: mappings merge key by key, the stage's
    other values win."""
    if isinstance(base, Mapping) and isinstance(own, Mapping):
        merged = dict(base)
        for key, value in own.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return own
