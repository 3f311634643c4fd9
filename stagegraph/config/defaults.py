"""Merge the ``defaults:`` block into every stage, keeping each value's position.

A stage's own keys win. Where both give a mapping (callbacks, loaders, the keyword arguments of
a `_target_`) they merge key by key, unless the two name different `_target_`s: then the
stage's replaces the default's. Lists and plain values are replaced. ``null`` in a stage removes
the key the defaults give (where the defaults do not give it, ``null`` stays: an unset value).
"""

from __future__ import annotations

from typing import Any

from stagegraph.config.document import Document
from stagegraph.config.problems import Path
from stagegraph.config.schema import TARGET_KEY


def merge_defaults(document: Document) -> None:
    """Merge ``defaults`` into each stage of ``document``, in place; positions follow: a value
    taken from the defaults is located where the defaults write it."""
    data = document.data
    if not isinstance(data, dict):
        return
    defaults, stages = data.get("defaults"), data.get("stages")
    if not isinstance(defaults, dict) or not defaults or not isinstance(stages, dict):
        return
    for name in stages:
        own = stages[name] if stages[name] is not None else {}
        if not isinstance(own, dict):
            continue  # the schema reports a stage that is not a mapping
        stages[name] = merge(defaults, own, document, ("defaults",), ("stages", name))


def merge(default: dict[Any, Any], own: dict[Any, Any], document: Document, default_path: Path,
          own_path: Path) -> dict[Any, Any]:
    """``own`` over ``default``: the merged mapping, located at ``own_path``."""
    merged: dict[Any, Any] = {}
    for key, value in default.items():
        if key not in own:
            merged[key] = value
            document.relocate((*default_path, key), (*own_path, key))
        elif own[key] is None:
            document.forget((*own_path, key))  # null removes the default
        elif _merges(value, own[key]):
            merged[key] = merge(value, own[key], document, (*default_path, key),
                                (*own_path, key))
        else:
            merged[key] = own[key]
    for key, value in own.items():
        if key not in default:
            merged[key] = value
    return merged


def _merges(default: Any, own: Any) -> bool:
    return (isinstance(default, dict) and isinstance(own, dict)
            and (TARGET_KEY not in own or own.get(TARGET_KEY) == default.get(TARGET_KEY)))
