"""Write a config as YAML text with comments: block mappings, short flow mappings and lists.

PyYAML writes every scalar (so quoting is YAML's own) but keeps no comments, so the layout is
done here: a `Block` is a mapping whose entries may carry a comment line above them and a note
at the end of their line. What is written reads back (``yaml.safe_load``) as `plain` of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

#: A flow mapping or list is written on one line when it fits in this many characters.
FLOW_WIDTH = 88
INDENT = "  "


@dataclass
class Entry:
    """``key: value``, with ``comments`` (lines above it) and a ``note`` (``# ...`` after it).

    An ``omitted`` entry is written as comments only: ``# key: note`` (something left out).
    """

    key: Any
    value: Any
    comments: list[str] = field(default_factory=list)
    note: str = ""
    omitted: bool = False


@dataclass
class Block:
    """A mapping written key by key, in order."""

    entries: list[Entry] = field(default_factory=list)

    def add(self, key: Any, value: Any, *, comment: str = "", note: str = "") -> Entry:
        entry = Entry(key, value, [comment] if comment else [], note)
        self.entries.append(entry)
        return entry

    def omit(self, key: Any, note: str) -> None:
        """Say in a comment that ``key`` is left out, and why."""
        self.entries.append(Entry(key, None, note=note, omitted=True))

    def get(self, key: Any) -> Entry | None:
        return next((e for e in self.entries if e.key == key and not e.omitted), None)

    def __bool__(self) -> bool:
        return any(not e.omitted for e in self.entries)


def plain(value: Any) -> Any:
    """``value`` with every `Block` turned into a dict: what the written text reads back as."""
    if isinstance(value, Block):
        return {e.key: plain(e.value) for e in value.entries if not e.omitted}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def dump(block: Block, header: list[str] | None = None) -> str:
    """The YAML text of ``block``, after ``header`` comment lines."""
    lines = [_comment(text, "") for text in header or []]
    lines.extend(_block(block, 0))
    return "\n".join(lines) + "\n"


def scalar(value: Any) -> str:
    """One scalar as YAML writes it inside a flow list (so quoted when a block or a flow
    context would misread it: ``'0?'``, ``'a, b'``), which is valid anywhere."""
    if isinstance(value, str) and not all(_plain_char(c) for c in value):
        return _double_quoted(value)  # YAML would write it over several lines
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6, allow_unicode=True)
    return text.strip()[1:-1]


def _plain_char(char: str) -> bool:
    return char.isprintable() and char not in "\u2028\u2029\x85"


def _double_quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar on one line (every unprintable escaped)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif _plain_char(char):
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _block(block: Block, depth: int) -> Iterator[str]:
    pad = INDENT * depth
    for entry in block.entries:
        for text in entry.comments:
            yield _comment(text, pad)
        if entry.omitted:
            yield _comment(f"{entry.key}: left out. {entry.note}", pad)
            continue
        key = f"{pad}{scalar(entry.key)}:"
        note = f"  # {entry.note}" if entry.note else ""
        flow = _flow(entry.value)
        if flow is not None and len(key) + 1 + len(flow) + len(note) <= FLOW_WIDTH + len(pad):
            yield f"{key} {flow}{note}"
        elif isinstance(entry.value, (Block, dict)) and _entries(entry.value):
            yield f"{key}{note}"
            yield from _block(_as_block(entry.value), depth + 1)
        elif isinstance(entry.value, list) and entry.value:
            yield f"{key}{note}"
            for item in entry.value:
                yield f"{pad}{INDENT}- {_flow(item) or scalar(plain(item))}"
        else:
            yield f"{key} {flow if flow is not None else scalar(plain(entry.value))}{note}"


def _flow(value: Any) -> str | None:
    """``value`` on one line, or ``None`` when it holds comments or notes (so it needs lines)."""
    if isinstance(value, Block):
        if any(e.comments or e.note or e.omitted for e in value.entries):
            return None
        value = {e.key: e.value for e in value.entries}
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            text = _flow(item)
            if text is None:
                return None
            parts.append(f"{scalar(key)}: {text}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list):
        items = [_flow(item) for item in value]
        if any(text is None for text in items):
            return None
        return "[" + ", ".join(t for t in items if t is not None) + "]"
    return scalar(value)


def _entries(value: Block | dict[Any, Any]) -> bool:
    return bool(value.entries) if isinstance(value, Block) else bool(value)



def _as_block(value: Block | dict[Any, Any]) -> Block:
    if isinstance(value, Block):
        return value
    return Block([Entry(k, v) for k, v in value.items()])


def _comment(text: str, pad: str) -> str:
    return f"{pad}# {text}".rstrip() if text else ""
