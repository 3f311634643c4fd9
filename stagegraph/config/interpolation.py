"""``${path.to.value}``: a string naming another value of the config (after the defaults merge).

A string that is exactly one ``${...}`` becomes the value it names, of its type (a number, a
list, a mapping); ``${...}`` inside a longer string is replaced by the named value's text
(``str()``), which must then be a plain value. Path parts are keys, or list indices
(``callbacks.accuracy.topk.0``). ``\\${`` writes a literal ``${``. A path that names nothing and
a value that names itself, directly or through others, are located errors.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from stagegraph.compiler.diagnostics import did_you_mean
from stagegraph.config.document import Document
from stagegraph.config.problems import Path, Problems, dotted

REFERENCE = re.compile(r"(?<!\\)\$\{([^{}]*)\}")
_ESCAPED = "\\${"


class _Missing(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Cycle(Exception):
    def __init__(self, chain: list[Path]) -> None:
        super().__init__(" -> ".join(dotted(p) for p in chain))
        self.chain = chain


def interpolate(document: Document, problems: Problems) -> None:
    """Replace every ``${...}`` in ``document``, in place; each failure is a problem at the
    string that holds it (and the string is left as it is)."""
    _Interpolator(document, problems).run()


class _Interpolator:
    def __init__(self, document: Document, problems: Problems) -> None:
        self.document = document
        self.problems = problems
        self.done: set[Path] = set()
        self.active: list[Path] = []

    def run(self) -> None:
        for path in list(_strings(self.document.data, ())):
            try:
                self.resolve(path)
            except _Missing as err:
                self.error("SF806", path, err.message,
                            "name a value of this file by its keys, e.g. ${stages.train."
                            "num_epochs}; write \\${ for a literal ${")
            except _Cycle as err:
                self.error("SF807", path, f"{self.text(path)!r} refers back to itself: "
                            f"{err}", "break the cycle: give one of these values directly")

    def text(self, path: Path) -> str:
        return str(self.document.get(path))

    def error(self, code: str, path: Path, message: str, hint: str) -> None:
        self.problems.error(code, message, hint, self.document.value_at(path))
        self.done.add(path)

    def resolve(self, path: Path) -> Any:
        """The value at ``path`` with its references resolved (and stored back)."""
        value = self.document.get(path)
        if path in self.done or not isinstance(value, str) or "${" not in value:
            return value
        if path in self.active:
            raise _Cycle([*self.active[self.active.index(path):], path])
        self.active.append(path)
        try:
            resolved = self.substitute(path, value)
        finally:
            self.active.pop()
        self.store(path, resolved)
        self.done.add(path)
        return resolved

    def substitute(self, path: Path, text: str) -> Any:
        whole = REFERENCE.fullmatch(text)
        if whole is not None:
            target = self.target(whole.group(1))
            value = self.value(target)
            if isinstance(value, (dict, list)):  # inside: where the target writes it
                site = self.document.values.get(path), self.document.keys.get(path)
                self.document.forget(path)
                self.document.relocate(target, path)
                for table, position in zip((self.document.values, self.document.keys), site,
                                           strict=True):
                    table.pop(path, None)
                    if position is not None:
                        table[path] = position
            return copy.deepcopy(value)

        def replace(match: re.Match[str]) -> str:
            value = self.value(self.target(match.group(1)))
            if isinstance(value, (dict, list)):
                raise _Missing(f"{match.group(0)} names a {type(value).__name__}, which cannot "
                               "be put inside text; use it as the whole value")
            return str(value)

        return REFERENCE.sub(replace, text).replace(_ESCAPED, "${")

    def value(self, target: Path) -> Any:
        """The value at ``target``, every reference inside it resolved."""
        for inner in list(_strings(self.document.get(target), target)):
            self.resolve(inner)
        return self.document.get(target)

    def target(self, reference: str) -> Path:
        """The path ``reference`` names; `_Missing` when it names nothing."""
        parts = reference.strip().split(".")
        if not reference.strip() or not all(parts):
            raise _Missing(f"${{{reference}}} is not a path: write ${{key.key.key}}")
        node: Any = self.document.data
        path: list[Any] = []
        for part in parts:
            key: Any = part
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise _Missing(f"${{{reference}}}: {dotted(tuple(path))} is a list of "
                                   f"{len(node)}, it has no item {part!r}")
                key = int(part)
            elif isinstance(node, dict):
                key = _key(node, part)
                if key is None:
                    raise _Missing(f"${{{reference}}}: there is no {part!r} in "
                                   f"{dotted(tuple(path))}."
                                   + did_you_mean(part, [str(k) for k in node]))
            else:
                raise _Missing(f"${{{reference}}}: {dotted(tuple(path))} is {node!r}, which has "
                               f"no {part!r}")
            node = node[key]
            path.append(key)
        return tuple(path)

    def store(self, path: Path, value: Any) -> None:
        parent = self.document.get(path[:-1])
        parent[path[-1]] = value


def _key(mapping: dict[Any, Any], part: str) -> Any:
    """The key of ``mapping`` that ``part`` spells (keys may be numbers or booleans)."""
    if part in mapping:
        return part
    return next((k for k in mapping if not isinstance(k, str) and str(k) == part), None)


def _strings(value: Any, path: Path) -> list[Path]:
    """The paths of every string holding ``${`` in ``value`` (at ``path``)."""
    if isinstance(value, str):
        return [path] if "${" in value else []
    found: list[Path] = []
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found.extend(_strings(item, (*path, key)))
    return found
