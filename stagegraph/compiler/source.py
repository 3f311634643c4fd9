"""A function's definition read from its source file: parsed with `ast`, never executed.

Used to infer what callbacks read and write (`compiler/inference.py`). Source that cannot be read
(a function made by ``exec`` or typed at a plain REPL, a file gone or edited since the import)
yields ``None``: whatever goes wrong only costs the knowledge, never the compile.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import tokenize
from dataclasses import dataclass
from typing import Any

#: What can go wrong reading or parsing source text.
UNREADABLE = (OSError, TypeError, ValueError, SyntaxError, tokenize.TokenError, RecursionError)


@dataclass(frozen=True)
class Definition:
    """``tree``: the ``def`` node; ``first_line``: the file line of the tree's line 1;
    ``filename``: the code object's file; ``text``: the definition's source."""

    tree: ast.FunctionDef | ast.AsyncFunctionDef
    first_line: int
    filename: str
    text: str


def definition(function: Any) -> Definition | None:
    """``function``'s definition read from its source, or ``None`` when that cannot be done.

    The text is found as `inspect.getsource` finds it, from the code object (file, first line),
    and must parse into a definition of that very function; otherwise the file changed since it
    was imported, and the answer is "not known" rather than a guess.
    """
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    return definition_at(code.co_filename, code.co_firstlineno, code.co_name,
                         getattr(function, "__globals__", None))


def definition_at(filename: str, first_line: int, name: str,
                  module_globals: dict[str, Any] | None = None) -> Definition | None:
    """The definition of the function ``name`` starting at ``filename:first_line`` (its first
    decorator's line, if any), or ``None`` when that cannot be read. `definition` reads a live
    function's this way; a config file's callback stand-in names its real method's place."""
    try:
        linecache.checkcache(filename)
        lines = linecache.getlines(filename, module_globals)
    except UNREADABLE:
        return None
    start = first_line - 1
    if not 0 <= start < len(lines):
        return None
    text = "".join(_block(lines, start))
    parsed = _parse(text, name)
    if parsed is None:  # a string or bracket reached back to the margin: let the tokenizer decide
        try:
            text = "".join(inspect.getblock(lines[start:]))
        except UNREADABLE:
            return None
        parsed = _parse(text, name)
    if parsed is None:
        return None
    tree, shift = parsed
    return Definition(tree, first_line - shift, filename, text)


def _block(lines: list[str], start: int) -> list[str]:
    """The lines of the definition at ``start``, cut at the first line (blank lines and comments
    aside) indented no deeper than the ``def`` — the whole function, unless a string or bracket
    reaches back to the margin; then the text does not parse."""
    head = lines[start]
    indent = len(head) - len(head.lstrip())
    end = start + 1
    while end < len(lines) and lines[end - 1].lstrip().startswith("@"):
        end += 1  # decorators, then the def line
    while end < len(lines) and not _at_or_left_of(indent, lines[end]):
        end += 1
    return lines[start:end]


def _at_or_left_of(indent: int, line: str) -> bool:
    stripped = line.lstrip()
    return bool(stripped) and not stripped.startswith("#") and len(line) - len(stripped) <= indent


def _parse(text: str, name: str) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, int] | None:
    """The definition of ``name`` the text holds, if that is all it holds, and by how many lines
    the tree's numbering is shifted (an indented method is parsed under ``if 1:``, which works
    where dedenting would not: a docstring's lines at column 0)."""
    wrapped = text[:1].isspace()
    try:
        tree = ast.parse("if 1:\n" + text if wrapped else text)
    except UNREADABLE:
        return None
    body = tree.body[0].body if wrapped and tree.body else tree.body  # type: ignore[attr-defined]
    if len(body) != 1 or not isinstance(body[0], (ast.FunctionDef, ast.AsyncFunctionDef)) \
            or body[0].name != name:
        return None
    return body[0], int(wrapped)
