"""Read a YAML or JSON config file once into plain values that remember where they are written.

PyYAML's composer gives every node its ``start_mark`` (line and column); the values are
constructed from the nodes here, so that each mapping key and each value keeps its position in
a `Document`. Anchors and aliases work as YAML defines them (an alias is the anchored node, so
its values are located at the anchor), and so do merge keys (``<<: *base``; the mapping's own
keys win). Unlike plain PyYAML, a key written twice in one mapping is an error, keys are always
text (they are names), only ``true`` and ``false`` are booleans and exponents without a dot
(``1e-3``) are numbers, as in YAML 1.2 and JSON, and dates stay text.
JSON files are read by the same composer, after Python's own parser has checked their syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stagegraph.config.problems import Path, Position, Problems

MERGE_TAG = "tag:yaml.org,2002:merge"
YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)
SUFFIXES = YAML_SUFFIXES + JSON_SUFFIXES


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's booleans (true and false only: ``no`` and ``on`` are text)
    and exponent floats, and without timestamps."""


_DROPPED = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


@dataclass
class Document:
    """A config file's values (dicts, lists, scalars) and where each is written.

    ``values[path]`` is where the value at ``path`` starts; ``keys[path]`` where the key naming
    it is written (mapping entries only).
    """

    file: str
    data: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)

    def value_at(self, path: Path) -> Position:
        """Where the value at ``path`` is written; else where its nearest written parent is."""
        return self._nearest(path, self.values, self.keys)

    def key_at(self, path: Path) -> Position:
        """Where the key naming the value at ``path`` is written; else its nearest parent's."""
        return self._nearest(path, self.keys, self.values)

    def _nearest(self, path: Path, first: dict[Path, Position], then: dict[Path, Position]
                 ) -> Position:
        for end in range(len(path), -1, -1):
            found = first.get(path[:end]) or then.get(path[:end])
            if found is not None:
                return found
        return Position(self.file, 1, 1)

    def get(self, path: Path) -> Any:
        """The value at ``path``; `KeyError` when there is none."""
        value = self.data
        for part in path:
            if not has(value, part):
                raise KeyError(part)
            value = value[part]
        return value

    def relocate(self, source: Path, target: Path, other: Document | None = None) -> None:
        """Locate the value at ``target`` and everything under it where ``other``'s (default:
        this document's) value at ``source`` and what is under it are written."""
        origin = other if other is not None else self
        for table, mine in ((origin.values, self.values), (origin.keys, self.keys)):
            for path, position in list(table.items()):
                if path[:len(source)] == source:
                    mine[target + path[len(source):]] = position

    def forget(self, prefix: Path) -> None:
        """Drop the positions of the value at ``prefix`` and everything under it."""
        for table in (self.values, self.keys):
            for path in [p for p in table if p[:len(prefix)] == prefix]:
                del table[path]


def has(value: Any, part: Any) -> bool:
    """Whether ``value[part]`` is a key of a mapping or an index of a list."""
    if isinstance(value, dict):
        return part in value
    return isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)


def read_document(path: str, problems: Problems) -> Document | None:
    """The document in file ``path`` (``None``, with problems, when it cannot be read)."""
    try:
        text = FilePath(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        problems.error("SF801", f"the file is not UTF-8 text: {err.reason} at byte {err.start}",
                       "save the file as UTF-8", Position(path))
        return None
    except OSError as err:
        problems.error("SF801", f"cannot read the file: {err.strerror or err}",
                       "check the path and its permissions", Position(path))
        return None
    return parse_document(text, path, problems)


def parse_document(text: str, file: str, problems: Problems) -> Document | None:
    """The document ``text`` holds; ``file`` names it in positions (a ``.json`` name: JSON)."""
    is_json = file.lower().endswith(JSON_SUFFIXES)
    if is_json:
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            problems.error("SF801", f"JSON syntax error: {err.msg}", _line_hint(text, err.lineno),
                           Position(file, err.lineno, err.colno))
            return None
        text = text.replace("\t", " ")  # whitespace in valid JSON, and YAML refuses it there
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        document = Document(file, None)
        if node is not None:
            document.data = _Builder(loader, document, problems).value(node, ())
        return document
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        context = err.context_mark.line + 1 if err.context_mark is not None else None
        problems.error("SF801", _syntax_message(err), _syntax_hint(err, text, line, context),
                       Position(file, line, column))
        return None
    except yaml.YAMLError as err:
        problems.error("SF801", f"YAML error: {err}", "fix the file's syntax", Position(file))
        return None
    finally:
        loader.dispose()


def _syntax_message(err: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (err.context, err.problem) if p]
    text = "; ".join(parts) or "syntax error"
    return f"YAML syntax error: {text}"


def _syntax_hint(err: yaml.MarkedYAMLError, text: str, line: int | None,
                 context: int | None) -> str:
    if err.problem and "'\\t'" in err.problem:
        return "YAML indents with spaces, not tabs"
    if err.problem and "could not determine a constructor" in err.problem:
        return "stagegraph config files use plain YAML: no !tags"
    lines = text.splitlines()
    if context is not None and context != line and 1 <= context <= len(lines):
        # Found where the construct ends (often the file's end): show where it began.
        return f"what is not closed began at line {context}: {lines[context - 1].strip()}"
    return _line_hint(text, line)


def _line_hint(text: str, line: int | None) -> str:
    lines = text.splitlines()
    if line is not None and 1 <= line <= len(lines) and lines[line - 1].strip():
        return f"line {line} reads: {lines[line - 1].strip()}"
    return "fix the file's syntax"


class _Builder:
    """Constructs plain values from nodes, recording positions in the document."""

    def __init__(self, loader: _Loader, document: Document, problems: Problems) -> None:
        self.loader = loader
        self.document = document
        self.problems = problems
        self._active: set[int] = set()  # nodes being built: an alias among them is a cycle

    def position(self, node: Node) -> Position:
        mark = node.start_mark
        return Position(self.document.file, mark.line + 1, mark.column + 1)

    def value(self, node: Node, path: Path) -> Any:
        self.document.values[path] = self.position(node)
        if isinstance(node, ScalarNode):
            return self.loader.construct_object(node)
        if id(node) in self._active:
            self.problems.error("SF801", "an alias refers to a mapping or list that contains it",
                                "a value cannot contain itself: copy what it needs instead",
                                self.position(node))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
        finally:
            self._active.discard(id(node))
        return None  # pragma: no cover - the composer makes only these three kinds

    def mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        own: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.key(key_node)
            if key in own:
                first = self.document.keys[(*path, key)]
                self.problems.error(
                    "SF802", f"key {key!r} is written twice in this mapping (first at line "
                             f"{first.line})", "keep one of them: YAML keeps only the last",
                    self.position(key_node))
                self.document.forget((*path, key))
            self.document.keys[(*path, key)] = self.position(key_node)
            own[key] = self.value(value_node, (*path, key))
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                for key, value in self.merged(value_node, path):
                    merged.setdefault(key, value)
        return {**{k: v for k, v in merged.items() if k not in own}, **own} if merged else own

    def merged(self, node: Node, path: Path) -> Iterator[tuple[Any, Any]]:
        """The entries a merge key (``<<``) brings: of one mapping, or of several in order."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problems.error("SF801", "a merge key (<<) takes a mapping or a list of "
                                    "mappings", "write <<: *anchor_of_a_mapping",
                                    self.position(source))
                continue
            for key_node, value_node in source.value:
                if key_node.tag == MERGE_TAG:
                    yield from self.merged(value_node, path)
                    continue
                key = self.key(key_node)
                if (*path, key) not in self.document.keys:
                    self.document.keys[(*path, key)] = self.position(key_node)
                    yield key, self.value(value_node, (*path, key))

    def key(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            self.problems.error("SF801", "a mapping key must be a plain value, not a mapping or "
                                "a list", "write keys as names: key: value", self.position(node))
            return f"<key at line {node.start_mark.line + 1}>"
        return str(node.value)  # a name, whatever it looks like: 1, on, null
