"""Where a top-level module name is found: in an experiment's folder, or elsewhere on
``sys.path`` (the standard library, an installed package) — for SF007, a file next to the
experiment named like another module. Nothing is imported: specs are only looked up."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import sys
from collections.abc import Collection
from pathlib import Path


def modules_in(folder: Path) -> list[tuple[str, Path]]:
    """The top-level modules a folder on ``sys.path`` provides: ``x.py`` and ``x/__init__.py``."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        name = entry.stem if entry.suffix == ".py" else entry.name
        if not name.isidentifier() or name.startswith("__"):
            continue
        if (entry.suffix == ".py" and entry.is_file()) or (entry / "__init__.py").is_file():
            found.append((name, entry))
    return found


def elsewhere(name: str, folder: Path, ignore: Collection[Path] = ()) -> str | None:
    """``"the standard library's module 'json'"`` or ``"the installed module 'x' (path)"`` when
    ``name`` is importable from somewhere other than ``folder`` and the folders in ``ignore``
    (other experiments' folders, which loading them added to ``sys.path``); ``None`` otherwise."""
    origin = _origin_elsewhere(name, {folder, *ignore})
    if origin is None:
        return None
    if name in sys.stdlib_module_names:
        return f"the standard library's module {name!r}"
    return f"the installed module {name!r} ({origin})"


def _origin_elsewhere(name: str, folders: Collection[Path]) -> str | None:
    """Where a module ``name`` outside ``folders`` comes from (``None``: nowhere, or only a
    namespace package, which a module of the folder takes precedence over)."""
    module = sys.modules.get(name)
    if module is not None:
        spec = getattr(module, "__spec__", None)
        origin = spec.origin if spec is not None else getattr(module, "__file__", None)
        if origin is not None and not _inside(origin, folders):
            return origin
    if name in sys.builtin_module_names:
        return "built-in"
    others = [p for p in sys.path if not _inside(p or ".", folders, exact=True)]
    try:
        found = importlib.machinery.PathFinder.find_spec(name, others)
    except (ImportError, ValueError):
        return None
    return None if found is None else found.origin


def found_in(name: str, folder: Path) -> bool:
    """Whether ``import name`` finds the module in ``folder``."""
    module = sys.modules.get(name)
    if module is not None:
        return _inside(getattr(module, "__file__", None) or "", {folder})
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and _inside(spec.origin, {folder})


def _inside(path: str, folders: Collection[Path], *, exact: bool = False) -> bool:
    """Whether ``path`` is one of ``folders`` (``exact``), or a file in one of them or in a
    package under it."""
    resolved = _resolved(path) if path else None
    if resolved is None:
        return False
    if exact:
        return resolved in folders
    return any(folder in resolved.parents for folder in folders)


@functools.lru_cache(maxsize=8192)
def _resolved(path: str) -> Path | None:
    """``path`` resolved (cached: every name of a folder checks the same ``sys.path`` entries,
    and ``realpath`` costs system calls)."""
    try:
        return Path(path).resolve()
    except OSError:
        return None
