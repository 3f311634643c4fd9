"""Positions in a config file, and the problems found in it, printed ``file:line:col: ...``.

A config problem is a `LoadProblem` (the CLI prints and serialises it like a problem loading a
Python file) that leads with its position, as compilers print theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stagegraph.loading import LoadError, LoadProblem

#: A place in a config document: mapping keys and list indices from the top.
Path = tuple[Any, ...]


@dataclass(frozen=True)
class Position:
    """Where something is written: ``file`` and 1-based ``line`` and ``column``.

    ``via`` is the ``--set PATH=VALUE`` that gave the value, when an override did (the position
    is then that of the value it replaced, or of the mapping it was added to).
    """

    file: str
    line: int | None = None
    column: int | None = None
    via: str | None = None

    def __str__(self) -> str:
        return ":".join(str(p) for p in (self.file, self.line, self.column) if p is not None)


def dotted(path: Path) -> str:
    """``('stages', 'train', 'num_epochs')`` -> ``stages.train.num_epochs``."""
    return ".".join(str(p) for p in path) or "(the top level)"


@dataclass(frozen=True)
class ConfigProblem(LoadProblem):
    """A problem in a config file: ``exp.yaml:14:7: error[SF803] message`` and a hint."""

    via: str | None = None

    @classmethod
    def at(cls, code: str, message: str, hint: str, position: Position,
           severity: str = "error") -> ConfigProblem:
        if position.via is not None:
            message = f"(set by {position.via}) {message}"
        return cls(code, message, hint, file=position.file, line=position.line,
                   column=position.column, severity=severity, via=position.via)

    def __str__(self) -> str:
        text = f"{self.where}: {self.severity}[{self.code}] {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "file": self.file, "line": self.line,
                "column": self.column}


class Problems:
    """The problems found so far; nothing is raised until `raise_if_errors`."""

    def __init__(self) -> None:
        self.items: list[ConfigProblem] = []

    def error(self, code: str, message: str, hint: str, at: Position) -> None:
        self.items.append(ConfigProblem.at(code, message, hint, at))

    def warning(self, code: str, message: str, hint: str, at: Position) -> None:
        self.items.append(ConfigProblem.at(code, message, hint, at, severity="warning"))

    @property
    def errors(self) -> list[ConfigProblem]:
        return [p for p in self.items if p.severity == "error"]

    @property
    def warnings(self) -> list[ConfigProblem]:
        return [p for p in self.items if p.severity != "error"]

    def raise_if_errors(self, exit_code: int = 1) -> None:
        """`ConfigError` with every problem (warnings too) when there is an error."""
        if self.errors:
            raise ConfigError(self.items, exit_code=exit_code)


class ConfigError(LoadError):
    """The config file cannot be turned into an experiment: ``problems`` say where and why.

    ``exit_code`` 2 marks a usage error (a bad ``--set``).
    """

    def __init__(self, problems: list[ConfigProblem], *, exit_code: int = 1) -> None:
        ordered = sorted(problems, key=_order)
        first = next(p for p in ordered if p.severity == "error")
        super().__init__(first, *[p for p in ordered if p is not first], exit_code=exit_code)


def _order(problem: ConfigProblem) -> tuple[int, int, int, str]:
    return (0 if problem.via else 1, problem.line or 0, problem.column or 0, problem.code)
