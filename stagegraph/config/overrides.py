"""``--set PATH=VALUE``: change one value of a config file from the command line.

``PATH`` names keys from the top (``stages.train.num_epochs``, ``optimizer.lr``,
``defaults.callbacks.accuracy.topk``); ``VALUE`` is read as YAML (``5``, ``1e-4``, ``true``,
``[1, 3]``, ``null``). Overrides apply to the file as written, before the defaults merge, in the
order given. A path the schema does not have, or that steps into a stage, callback or loader the
file does not have, is an error with a did-you-mean; the value is type-checked with the rest of
the file, and a wrong one is reported naming the ``--set``. Both are located in the file: at the
value the override replaces, or at the mapping it adds a key to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from stagegraph.compiler.diagnostics import did_you_mean
from stagegraph.config.document import Document, _Loader
from stagegraph.config.problems import Path, Position, Problems, dotted
from stagegraph.config.shape import ROOT, Shape, step

#: The codes of problems with a ``--set`` (usage errors: the command exits 2).
OVERRIDE_CODES = ("SF808", "SF809")
HINT = ("write --set KEY.KEY=VALUE with keys of the file, such as --set stages.train."
        "num_epochs=5 or --set optimizer.lr=1e-4")


def apply_overrides(document: Document, overrides: Sequence[str], problems: Problems) -> None:
    """Apply each ``PATH=VALUE`` of ``overrides`` to ``document``, in place."""
    for text in overrides:
        flag = f"--set {text}"
        parsed = _parse(text, flag, document, problems)
        if parsed is None:
            continue
        path, value = parsed
        if _check_path(path, flag, document, problems):
            _assign(document, path, value, flag)


def _parse(text: str, flag: str, document: Document, problems: Problems
           ) -> tuple[Path, Any] | None:
    name, sep, raw = text.partition("=")
    keys = tuple(name.strip().split("."))
    if not sep or not name.strip() or not all(keys):
        problems.error("SF808", f"{flag}: expected KEY.KEY=VALUE", HINT, Position(document.file))
        return None
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err)
        problems.error("SF809", f"{flag}: the value {raw!r} is not a YAML value ({problem})",
                       "quote a string that holds YAML's special characters: "
                       f"--set '{name}=\"...\"'", Position(document.file))
        return None
    return keys, value


def _check_path(keys: Path, flag: str, document: Document, problems: Problems) -> bool:
    """Whether ``keys`` names a value the schema has; else a problem at the deepest mapping the
    file has on the way."""
    shape: Shape | None = ROOT
    node: Any = document.data
    done: list[Any] = []
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        here = _existing(node, key)
        assert shape is not None
        following = step(shape, key, None if here is None else node[here])
        problem = _path_problem(shape, key, here, node, last, following)
        if problem is not None:
            message, candidates = problem
            where = document.key_at(tuple(done)) if done else Position(document.file, 1, 1)
            problems.error("SF808", f"{flag}: {message}" + did_you_mean(key, candidates),
                           _path_hint(shape, done, candidates), where)
            return False
        done.append(here if here is not None else key)
        node = node[here] if here is not None else None
        shape = following
    return True


def _path_problem(shape: Shape, key: str, here: Any, node: Any, last: bool,
                  following: Shape | None) -> tuple[str, list[str]] | None:
    """What is wrong with stepping to ``key`` (a message and the keys it may have meant)."""
    where = "the file" if shape is ROOT else "it"
    if following is None:
        if shape.kind == "model":
            return f"{where} has no setting {key!r}.", shape.keys()
        return f"{key!r} goes into a plain value", []
    if here is None and shape.kind == "list":
        return f"the list has no item {key!r}", []
    if here is None and shape.kind == "mapping" and not last:
        known = [str(k) for k in node] if isinstance(node, dict) else []
        return f"there is no {key!r} to change.", known
    return None


def _path_hint(shape: Shape, done: list[Any], candidates: list[str]) -> str:
    place = dotted(tuple(done))
    if candidates:
        listed = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
        return f"{place} has: {listed}"
    return HINT


def _existing(node: Any, key: str) -> Any:
    """The key or index of ``node`` that ``key`` spells, or ``None``."""
    if isinstance(node, dict):
        if key in node:
            return key
        return next((k for k in node if not isinstance(k, str) and str(k) == key), None)
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return int(key)
    return None


def _assign(document: Document, keys: Path, value: Any, flag: str) -> None:
    """Set the value; missing mappings on the way are made. Its position: the value it replaces
    (or the mapping it is added to), marked as set by ``flag``."""
    if not isinstance(document.data, dict):
        return
    node: Any = document.data
    path: list[Any] = []
    for key in keys[:-1]:
        here = _existing(node, key)
        if here is None or not isinstance(node[here], (dict, list)):
            here = key
            node[here] = {}
            made = (*path, here)
            document.forget(made)
            document.values[made] = document.keys[made] = _via(document.value_at(made), flag)
        path.append(here)
        node = node[here]
    last = _existing(node, keys[-1])
    last = last if last is not None else keys[-1]
    full = (*path, last)
    replaced = document.value_at(full)
    key_position = document.key_at(full)
    document.forget(full)
    node[last] = value
    if isinstance(node, dict):
        document.keys[full] = _via(key_position, flag)
    document.values[full] = _via(replaced, flag)
    if isinstance(value, (dict, list)):
        _mark_inside(document, value, full, document.values[full])


def _via(position: Position, flag: str) -> Position:
    return Position(position.file, position.line, position.column, via=flag)


def _mark_inside(document: Document, value: Any, path: Path, position: Position) -> None:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        document.values[(*path, key)] = position
        if isinstance(value, dict):
            document.keys[(*path, key)] = position
        if isinstance(item, (dict, list)):
            _mark_inside(document, item, (*path, key), position)
