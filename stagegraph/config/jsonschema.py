"""The JSON Schema of the config format, for editors: ``stagegraph schema --config``.

It is pydantic's schema of `stagegraph.config.schema.ConfigFile` (every field described), with
what an editor checks the file as written needs besides: ``${...}`` accepted wherever a number,
a boolean, a list or a choice is, and the callbacks of a stage described one by one — each
built-in callback with its parameters, read from its signature (`builtin_schemas`, a hook that
degrades to none when the built-ins cannot be imported), and the user's by dotted path.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from stagegraph.config.schema import TARGET_KEY, ConfigFile, Level

DRAFT = "https://json-schema.org/draft/2020-12/schema"
INTERPOLATION = {"type": "string", "pattern": r"\$\{[^{}]+\}",
                 "description": "another value of the file: ${stages.train.num_epochs}"}
#: What every callback may declare besides its own parameters (`stagegraph.Callback`).
DECLARATIONS: dict[str, Any] = {
    "order": {"type": "integer", "description": "the order bucket (Metric 20, Optimizer 60...)"},
    "node": {"enum": ["all", "master", "worker"],
             "description": "which processes of a distributed run run it"},
    "scope": {"enum": ["stage", "experiment"],
              "description": "experiment: it migrates to the stages that follow"},
    **{name: {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
              "description": what} for name, what in (
        ("after", "callbacks it runs after"), ("before", "callbacks it runs before"),
        ("reads", "dataflow keys it reads, such as output.logits"),
        ("writes", "dataflow keys it writes, such as metric.accuracy"),
        ("claims", "resources only one callback of a stage may hold"),
        ("needs", "what the stage or run must provide (logdir, optimizer...)"))},
    "watch": {"type": ["string", "null"], "description": "the valid metric it ranks epochs by"},
    "watch_minimize": {"type": ["boolean", "null"],
                       "description": "whether a lower watched metric is better"},
    "lints": {"type": "object", "additionalProperties": {"enum": list(typing.get_args(Level))},
              "description": "diagnostic levels by code, for this callback"},
}
_NAMES: dict[str, Any] = {**vars(typing), **vars(collections.abc), "TextIO": typing.TextIO}


def config_json_schema(builtins: Callable[[], dict[str, dict[str, Any]]] | None = None
                       ) -> dict[str, Any]:
    """The JSON Schema of config files. ``builtins`` gives the built-in callbacks' schemas by
    class name (default: `builtin_schemas`)."""
    schema = ConfigFile.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for definition in [schema, *defs.values()]:
        for name, field in definition.get("properties", {}).items():
            if _is_leaf(field) and name not in (TARGET_KEY, "$schema"):
                definition["properties"][name] = _or_interpolation(field)
    defs["Callback"] = {"anyOf": [*(builtins or builtin_schemas)().values(), _user_callback()]}
    for name in ("Stage", "Defaults"):
        defs[name]["properties"]["callbacks"]["anyOf"][0]["additionalProperties"] = {
            "anyOf": [{"$ref": "#/$defs/Callback"}, {"type": "null"}]}
    return {"$schema": DRAFT, **schema, "title": "stagegraph experiment config"}


def builtin_schemas() -> dict[str, dict[str, Any]]:
    """Each built-in callback's schema: its `_target_` names and parameters (``{}`` when the
    built-ins cannot be imported)."""
    try:
        from stagegraph.config.callbacks import BUILTINS, builtin_callbacks

        classes = builtin_callbacks()
    except Exception:
        return {}
    return {name: _callback_schema(name, cls, BUILTINS) for name, cls in classes.items()}


def _callback_schema(name: str, cls: type, package: str) -> dict[str, Any]:
    targets = [name, f"{package}.{name}", f"{cls.__module__}.{cls.__qualname__}"]
    properties: dict[str, Any] = {TARGET_KEY: {"enum": list(dict.fromkeys(targets))}}
    required = [TARGET_KEY]
    for param in inspect.signature(cls).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        properties[param.name] = _parameter(param, cls)
        if param.default is param.empty:
            required.append(param.name)
    properties.update({k: v for k, v in DECLARATIONS.items() if k not in properties})
    doc = inspect.getdoc(cls) or ""
    return {"type": "object", "title": name, "description": doc.split("\n\n")[0],
            "properties": properties, "required": required, "additionalProperties": False}


def _parameter(param: inspect.Parameter, cls: type) -> dict[str, Any]:
    found: dict[str, Any] = {}
    annotation = param.annotation
    try:
        if isinstance(annotation, str):
            module = inspect.getmodule(cls)
            annotation = eval(annotation, {**_NAMES, **vars(module or typing)})
        if annotation is not param.empty:
            found = TypeAdapter(annotation).json_schema()
    except Exception:  # a type pydantic cannot describe (a tensor, a stream): any value
        found = {}
    found.pop("title", None)
    if param.default is not param.empty:
        with contextlib.suppress(Exception):  # a default JSON cannot show is left out
            found["default"] = TypeAdapter(Any).dump_python(param.default, mode="json")
    return _or_interpolation(found) if _is_leaf(found) else found


def _user_callback() -> dict[str, Any]:
    return {"type": "object", "title": "your callback",
            "description": "a stagegraph.Callback subclass of yours, by dotted path; the other "
                           "keys are its keyword arguments",
            "properties": {TARGET_KEY: {"type": "string", "pattern": r"^[A-Za-z_][\w.]*[.:]\w+",
                                        "description": "pkg.module.ClassName"}},
            "required": [TARGET_KEY], "additionalProperties": True}


def _is_leaf(field: dict[str, Any]) -> bool:
    """A number, boolean, list or choice (possibly or null), where ``${...}`` may stand."""
    options = field.get("anyOf", [field])
    kinds = set()
    for option in options:
        kind = option.get("type")
        kinds.update(kind if isinstance(kind, list) else [kind])
        if "enum" in option or "const" in option:
            kinds.add("enum")
    kinds.discard("null")
    return bool(kinds) and kinds <= {"integer", "number", "boolean", "array", "enum"}


def _or_interpolation(field: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: field[k] for k in ("description", "default") if k in field}
    rest = {k: v for k, v in field.items() if k not in kept and k != "title"}
    options = rest["anyOf"] if set(rest) == {"anyOf"} else [rest]
    return {"anyOf": [*options, INTERPOLATION], **kept}
