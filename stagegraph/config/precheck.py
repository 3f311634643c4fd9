"""The `_target_` checks of a config file whose schema check failed, so that one `validate`
reports a wrong type and a misspelt `_target_` together instead of one after the other.

An experiment is only built from a valid document; here every `_target_` mapping the document
holds is checked as the builder would check it (module, name, keyword arguments; a bare callback
name against the built-ins), without the shape the schema guarantees: what the schema already
reported is not repeated, and a value copied into several stages by ``defaults:`` is reported once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stagegraph.config.build import Builder, nested_targets
from stagegraph.config.callbacks import is_builtin
from stagegraph.config.document import Document
from stagegraph.config.problems import Path, Problems
from stagegraph.config.schema import NAMES_KEY, OPTIMIZER_OPTIONS, TARGET_KEY


def precheck_targets(document: Document, problems: Problems, search_path: Sequence[str]) -> None:
    """Add to ``problems`` what is wrong with the document's `_target_` mappings (SF810-SF812),
    each problem once."""
    if not isinstance(document.data, Mapping):  # the schema said what the top level must be
        return
    found = Problems()
    builder = Builder(document, found, static=True, search_path=search_path)
    data = {k: v for k, v in document.data.items() if k != "defaults"}
    for path, spec in nested_targets(data, ()):
        if isinstance(spec.get(TARGET_KEY), str):
            _check(builder, path, spec)
    seen = {(p.code, p.line, p.column, p.message) for p in problems.items}
    for problem in found.items:
        key = (problem.code, problem.line, problem.column, problem.message)
        if key not in seen:
            seen.add(key)
            problems.items.append(problem)


def _check(builder: Builder, path: Path, spec: Mapping[str, Any]) -> None:
    target = spec[TARGET_KEY]
    callback = len(path) >= 2 and path[-2] == "callbacks"
    if callback and is_builtin(target):
        builder.callbacks.builtin_class(target, path)  # SF812 for a name no built-in has
        return
    dropped = (NAMES_KEY, *(OPTIMIZER_OPTIONS if path[-1] == "optimizer" else ()))
    builder.check({k: v for k, v in spec.items() if k not in dropped}, path, callback=callback)
