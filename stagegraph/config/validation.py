"""Validate a config document with the schema's models; each pydantic error becomes a problem at
the line and column of the key or value it is about.

A wrong value (SF803) is located at the value, an unknown key (SF804, with a did-you-mean) at
the key, a missing key (SF805) at the mapping that lacks it. A value that a ``--set`` gave is
reported as a problem with that override (SF809), naming it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from stagegraph.compiler.diagnostics import did_you_mean
from stagegraph.config.document import Document, has
from stagegraph.config.problems import Path, Position, Problems, dotted
from stagegraph.config.schema import ConfigFile
from stagegraph.config.shape import shape_at

#: What a pydantic error type says the value should have been.
EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "bool_type": "true or false",
    "string_type": "a string", "float_type": "a number", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "none_required": "null",
}


def validate(document: Document, problems: Problems) -> ConfigFile | None:
    """The validated config, or ``None`` with every problem reported."""
    try:
        return ConfigFile.model_validate(document.data)
    except ValidationError as err:
        grouped: dict[tuple[str, Path], list[Any]] = {}
        for error in err.errors():
            kind, path = _resolve(error, document.data)
            grouped.setdefault((kind, path), []).append(error)
        for (kind, path), errors in grouped.items():
            _report(kind, path, errors, document, problems)
        return None


def _resolve(error: Any, data: Any) -> tuple[str, Path]:
    """What the error is about — ``value``, ``key`` (a key of a mapping), ``unknown`` or
    ``missing`` — and its path in the document (pydantic's union tags dropped)."""
    loc = tuple(error["loc"])
    if error["type"] == "missing":
        return "missing", (*_in_document(loc[:-1], data), loc[-1])
    if error["type"] == "extra_forbidden":
        return "unknown", (*_in_document(loc[:-1], data), loc[-1])
    path = _in_document(loc, data)
    return ("key" if "[key]" in loc else "value"), path


def _in_document(loc: Path, data: Any) -> Path:
    path: list[Any] = []
    node = data
    for part in loc:
        if has(node, part):
            node = node[part]
            path.append(part)
    return tuple(path)


def _report(kind: str, path: Path, errors: list[Any], document: Document,
            problems: Problems) -> None:
    parent = dotted(path[:-1]) if len(path) > 1 else "the file"
    name = path[-1] if path else "the file"
    if kind == "missing":
        at = document.key_at(path[:-1]) if path[:-1] else Position(document.file, 1, 1)
        what = "the file" if len(path) == 1 else dotted(path[:-1])
        _add(problems, "SF805", at, f"{what} has no {name!r}, which is required",
             _required_hint(document.data, path))
        return
    if kind == "unknown":
        shape = shape_at(document.data, path[:-1])
        keys = shape.keys() if shape is not None else []
        message = f"unknown key {name!r} in {parent}." + did_you_mean(name, keys)
        hint = (f"{parent} takes: {', '.join(keys)}" if keys
                else "remove the key")
        _add(problems, "SF804", document.key_at(path), message, hint)
        return
    if kind == "key":
        _add(problems, "SF803", document.key_at(path), f"the key {name!r} in {parent} must be a "
             "string", "write names as plain words: train, accuracy", )
        return
    value = _value(document, path)
    _add(problems, "SF803", document.value_at(path),
         f"{_subject(path)} must be {_expected(errors)}, not {_show(value)}",
         _value_hint(document.data, path))


def _add(problems: Problems, code: str, at: Position, message: str, hint: str) -> None:
    if at.via is not None:
        code = "SF809"
    problems.error(code, message, hint, at)


def _subject(path: Path) -> str:
    if not path:
        return "the file"
    if isinstance(path[-1], int):
        return f"item {path[-1]} of {dotted(path[:-1])}"
    return dotted(path) if len(path) <= 2 else f"{path[-1]!r} of {dotted(path[:-1])}"


def _expected(errors: list[Any]) -> str:
    """What the value should be; a union's members joined with 'or'."""
    said: list[str] = []
    for error in errors:
        if error["type"] == "literal_error":
            text = f"one of {error['ctx']['expected']}"
        elif error["type"] in EXPECTED:
            text = EXPECTED[error["type"]]
        else:
            text = _lower(error["msg"].removeprefix("Input should be "))
        if text not in said:
            said.append(text)
    return " or ".join(said) if said else "something else"


def _lower(text: str) -> str:
    if text.startswith(("String should ", "List should ", "Dictionary should ")):
        return "a value that " + text.split(" ", 1)[1].replace("should ", "", 1)
    return text[:1].lower() + text[1:]


def _value(document: Document, path: Path) -> Any:
    try:
        return document.get(path)
    except KeyError:
        return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _description(data: Any, path: Path) -> str:
    shape = shape_at(data, path[:-1]) if path else None
    if shape is None or shape.model is None:
        return ""
    for name, info in shape.model.model_fields.items():
        if path[-1] in (info.alias, name):
            return info.description or ""
    return ""


def _value_hint(data: Any, path: Path) -> str:
    described = _description(data, path)
    if not path:
        return "a config file is a mapping: experiment: NAME, stages: {...}, ..."
    return f"{path[-1]}: {described}" if described else "see docs/config.md for the format"


def _required_hint(data: Any, path: Path) -> str:
    described = _description(data, path)
    return f"add {path[-1]}: {described}" if described else f"add {path[-1]}"
