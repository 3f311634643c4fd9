"""Static knowledge of `_target_` paths, read without importing anything.

PLACEHOLDER: the real module (finding the module on the search path, reading it with `ast`,
checking names and keyword arguments, reading a user callback's literal declarations) is written
on another branch; this one has its signatures and knows nothing: no problem is found and no
callback can be read statically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TargetProblem:
    """Something wrong with a `_target_`: ``key`` ``None`` is the path itself, else the keyword
    argument at fault."""

    key: str | None
    message: str
    hint: str


@dataclass(frozen=True)
class StaticCallback:
    """A user callback class as its source shows it: where it is, its literal declarations
    (``order``, ``node``, ``scope``, ``reads`` ...) and the methods it defines (name -> line)."""

    module: str
    qualname: str
    file: str
    line: int
    declarations: Mapping[str, Any] = field(default_factory=dict)
    events: Mapping[str, int] = field(default_factory=dict)
    methods: Mapping[str, int] = field(default_factory=dict)


def check_target(path: str, kwargs: Sequence[str], *, search_path: Sequence[str]
                 ) -> list[TargetProblem]:
    """The problems of calling ``path`` with keyword arguments ``kwargs`` (placeholder: none)."""
    return []


def static_callback(path: str, *, search_path: Sequence[str]) -> StaticCallback | None:
    """The callback class ``path`` names, read without importing it (placeholder: ``None``)."""
    return None
