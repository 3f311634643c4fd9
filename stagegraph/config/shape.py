"""What the schema expects at a path of a config document: a model, a mapping, a list, free
keyword arguments, or a plain value. Used to check ``--set`` paths and to suggest keys."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from stagegraph.config.schema import TARGET_KEY, ConfigFile, Target


@dataclass(frozen=True)
class Shape:
    """``kind``: ``model`` (``model`` set), ``mapping`` / ``list`` (``item`` the type of their
    values), ``free`` (anything: a target's keyword arguments) or ``value`` (a plain value)."""

    kind: str
    model: type[BaseModel] | None = None
    item: Any = None

    def keys(self) -> list[str]:
        """The keys a model takes, by the names a file uses."""
        if self.model is None:
            return []
        return [f.alias or name for name, f in self.model.model_fields.items()]

    def field(self, key: Any) -> Any:
        """The type of ``key`` in the model, or ``None`` when it has no such field."""
        assert self.model is not None
        for name, info in self.model.model_fields.items():
            if key in (info.alias, name):
                return info.annotation
        return None

    @property
    def free_keys(self) -> bool:
        """Whether the model also takes keys it does not list (a target's arguments)."""
        return self.model is not None and issubclass(self.model, Target)


ROOT = Shape("model", ConfigFile)
FREE = Shape("free")


def shape_of(annotation: Any, value: Any) -> Shape:
    """The shape of ``annotation`` for ``value`` (which member of a union applies)."""
    tp = _unwrap(annotation, value)
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return Shape("model", tp)
    if origin is dict:
        return Shape("mapping", item=get_args(tp)[1])
    if origin is list:
        return Shape("list", item=get_args(tp)[0])
    if tp is Any:
        return FREE
    return Shape("value", item=tp)


def step(shape: Shape, key: Any, value: Any) -> Shape | None:
    """The shape under ``key`` of a value of ``shape`` (``value``: what is there now, or
    ``None``); ``None`` when ``shape`` has no such key."""
    if shape.kind == "free":
        return FREE
    if shape.kind == "model":
        annotation = shape.field(key)
        if annotation is None:
            return FREE if shape.free_keys else None
        return shape_of(annotation, value)
    if shape.kind == "mapping":
        return shape_of(shape.item, value)
    if shape.kind == "list" and isinstance(key, int):
        return shape_of(shape.item, value)
    return None


def shape_at(data: Any, path: tuple[Any, ...]) -> Shape | None:
    """The shape the schema expects at ``path`` of ``data``; ``None`` when the path leaves it."""
    shape: Shape | None = ROOT
    node = data
    for key in path:
        node = _child(node, key)
        shape = step(shape, key, node) if shape is not None else None
        if shape is None:
            return None
    return shape


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def _unwrap(tp: Any, value: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            tp = members[0] if len(members) == 1 else _member(members, value)
        else:
            return tp


def _member(members: list[Any], value: Any) -> Any:
    """The member of a union that ``value`` is meant as: a `_target_` mapping, another
    mapping, a list, or else the first plain type."""
    def base(tp: Any) -> Any:
        while get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        return tp

    def is_model(tp: Any) -> bool:
        return isinstance(base(tp), type) and issubclass(base(tp), BaseModel)

    if isinstance(value, dict):
        models = [m for m in members if is_model(m)]
        mappings = [m for m in members if get_origin(base(m)) is dict]
        preferred = models if TARGET_KEY in value or not mappings else mappings
        if preferred:
            return preferred[0]
    if isinstance(value, list):
        lists = [m for m in members if get_origin(base(m)) is list]
        if lists:
            return lists[0]
    plain = [m for m in members if not is_model(m) and get_origin(base(m)) not in (dict, list)]
    return plain[0] if plain else members[0]
