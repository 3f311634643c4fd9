"""Module source files: located on a search path without importing anything, and their
top-level bindings read with `ast` (each file parsed once per version).

A module is located the way the import system would locate it, with
`importlib.machinery.PathFinder` level by level (or an installed finder that only locates, as
editable installs add); its source is then read, never executed.

Only what the module's own top level binds is recorded: ``def`` and ``class`` statements,
assignments, ``import`` aliases and ``from x import y`` (as the module and name they refer to),
``from x import *`` and a literal ``__all__``. A name bound inside a branch that may not run (an
``if``, a ``try`` handler, a loop) is not ``certain``: it exists, but what it is is not known.
"""

from __future__ import annotations

import ast
import functools
import os
import pkgutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec, PathFinder

#: What can go wrong reading or parsing a file: it only costs the knowledge.
UNREADABLE = (OSError, ValueError, SyntaxError, RecursionError, MemoryError)


@dataclass(frozen=True)
class Module:
    """A module found on the search path: ``file`` is its source (None: none to read — an
    extension, a built-in, a namespace package); ``paths`` where its submodules are (packages)."""

    name: str
    file: str | None
    paths: tuple[str, ...] | None


@dataclass(frozen=True)
class Binding:
    """One top-level name: its ``def``/``class`` statement, the single value it is assigned, or
    the ``(module, name)`` it is imported as (``name`` None: the module itself)."""

    node: ast.stmt | None = None
    value: ast.expr | None = None
    imported: tuple[str, str | None] | None = None
    certain: bool = True


@dataclass(frozen=True)
class Table:
    """``names``: top-level bindings; ``stars``: modules star-imported (absolute names);
    ``exported``: a literal ``__all__`` (empty when absent or not literal)."""

    names: dict[str, Binding]
    stars: tuple[str, ...] = ()
    exported: tuple[str, ...] = field(default=())


def parse(file: str) -> ast.Module | None:
    """``file`` parsed (cached while its modification time and size stay), or None."""
    stamp = _stamp(file)
    return None if stamp is None else _parse(file, *stamp)


def table(file: str, module: str, is_package: bool) -> Table | None:
    """The bindings of the module ``module`` whose source is ``file``, or None if unreadable."""
    stamp = _stamp(file)
    return None if stamp is None else _table(file, *stamp, module, is_package)


def is_dynamic(file: str) -> bool:
    """Whether ``file`` may define top-level names its text does not show: a module
    ``__getattr__``, ``globals()`` / ``vars()`` / ``exec`` / ``setattr`` at work."""
    stamp = _stamp(file)
    return stamp is not None and _is_dynamic(file, *stamp)


def _stamp(file: str) -> tuple[int, int] | None:
    try:
        status = os.stat(file)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


@functools.lru_cache(maxsize=256)
def _parse(file: str, mtime: int, size: int) -> ast.Module | None:
    try:
        with open(file, "rb") as handle:
            return ast.parse(handle.read(), file)
    except UNREADABLE:
        return None


@functools.lru_cache(maxsize=256)
def _table(file: str, mtime: int, size: int, module: str, is_package: bool) -> Table | None:
    tree = _parse(file, mtime, size)
    if tree is None:
        return None
    builder = _Builder(module if is_package else module.rpartition(".")[0])
    builder.walk(tree.body, conditional=False)
    return Table(builder.names, tuple(builder.stars), tuple(builder.exported))


@functools.lru_cache(maxsize=256)
def _is_dynamic(file: str, mtime: int, size: int) -> bool:
    tree = _parse(file, mtime, size)
    if tree is None:
        return True
    for statement in tree.body:  # the top level: what runs when the module is imported
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if statement.name == "__getattr__":
                return True
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Name) and node.id == "__getattr__":
                return True
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("globals", "vars", "exec", "setattr"):
                return True
    return False


class _Builder:
    """Walks top-level statements, recording what each binds."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.names: dict[str, Binding] = {}
        self.stars: list[str] = []
        self.exported: list[str] = []

    def bind(self, name: str, binding: Binding, conditional: bool) -> None:
        self.names[name] = binding if not conditional else Binding(
            binding.node, binding.value, binding.imported, certain=False)

    def walk(self, body: list[ast.stmt], conditional: bool) -> None:
        for statement in body:
            self.statement(statement, conditional)

    def statement(self, node: ast.stmt, conditional: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.bind(node.name, Binding(node=node), conditional)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            self.assignment(node, conditional)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.bind(alias.asname, Binding(imported=(alias.name, None)), conditional)
                else:
                    top = alias.name.partition(".")[0]
                    self.bind(top, Binding(imported=(top, None)), conditional)
        elif isinstance(node, ast.ImportFrom):
            self.import_from(node, conditional)
        elif isinstance(node, ast.If):
            if _is_type_checking(node.test):  # never true at run time
                self.walk(node.orelse, conditional)
            else:
                self.walk(node.body + node.orelse, True)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.walk(node.body + node.finalbody, conditional)  # type: ignore[attr-defined]
            for handler in node.handlers:  # type: ignore[attr-defined]
                self.walk(handler.body, True)
            self.walk(node.orelse, True)  # type: ignore[attr-defined]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            self.walk(node.body, conditional)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            for name in _targets(node.target) if not isinstance(node, ast.While) else ():
                self.bind(name, Binding(), True)
            self.walk(node.body + node.orelse, True)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.names.pop(target.id, None)

    def assignment(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign,
                   conditional: bool) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if isinstance(node, ast.AnnAssign) and node.value is None:
            return  # an annotation alone binds nothing
        single = len(targets) == 1 and isinstance(targets[0], ast.Name)
        for target in targets:
            for name in _targets(target):
                if name == "__all__" and node.value is not None:
                    self.export(node, conditional)
                if not isinstance(node, ast.AugAssign):
                    value = node.value if single else None
                    self.bind(name, Binding(value=value), conditional)

    def export(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign, conditional: bool) -> None:
        try:
            names = ast.literal_eval(node.value) if node.value is not None else ()
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            return
        if not isinstance(node, ast.AugAssign):
            self.exported.clear()
        self.exported.extend(names)

    def import_from(self, node: ast.ImportFrom, conditional: bool) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        for alias in node.names:
            if alias.name == "*":
                self.stars.append(source)
            else:
                self.bind(alias.asname or alias.name, Binding(imported=(source, alias.name)),
                          conditional)


def _targets(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [name for element in node.elts for name in _targets(element)]
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    return []


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def find_top(name: str, search_path: tuple[str, ...]) -> ModuleSpec | None:
    """Where the top-level module ``name`` is: on ``search_path``, built into the interpreter,
    or known to a finder installed beside PathFinder (an editable install's: already loaded,
    it maps names to folders and imports nothing)."""
    spec = PathFinder.find_spec(name, list(search_path))
    if spec is not None:
        return spec
    if name in sys.builtin_module_names:
        return ModuleSpec(name, None, origin="built-in")
    # Finders installed beside PathFinder (editable installs) only locate: they run no module.
    standard = {"BuiltinImporter", "FrozenImporter", "PathFinder"}
    for meta in sys.meta_path:
        if getattr(meta, "__name__", type(meta).__name__) in standard:
            continue
        try:
            spec = meta.find_spec(name, None)
        except Exception:  # a third-party finder's failure only costs the lookup
            continue
        if spec is not None:
            return spec
    return None


def find_sub(name: str, paths: tuple[str, ...]) -> ModuleSpec | None:
    """Where the submodule ``name`` (``pkg.sub``) is, in its package's ``paths``."""
    try:
        return PathFinder.find_spec(name, list(paths))
    except KeyError:  # a namespace package: its _NamespacePath asks sys.modules for the parent
        return ModuleSpec(name, None, is_package=True)


def from_spec(name: str, spec: ModuleSpec | None, searched: Sequence[str]) -> Module | None:
    """The `Module` a spec found in ``searched`` describes: a namespace package's portions are
    the folders named like it there (its spec would ask ``sys.modules`` for its parent)."""
    if spec is None:
        return None
    origin = spec.origin
    readable = origin if origin and origin.endswith((".py", ".pyw")) \
        and os.path.isfile(origin) else None
    locations = spec.submodule_search_locations
    if locations is None:
        return Module(name, readable, None)
    if origin is None or origin == "namespace":  # its parts, without asking the import system
        last = name.rpartition(".")[2]
        parts = (os.path.join(entry or os.curdir, last) for entry in searched)
        return Module(name, None, tuple(dict.fromkeys(p for p in parts if os.path.isdir(p))))
    return Module(name, readable, tuple(locations))


def top_level_names(search_path: tuple[str, ...]) -> tuple[str, ...]:
    """Every top-level module importable from ``search_path`` (for did-you-mean)."""
    return tuple(dict.fromkeys((*(m.name for m in pkgutil.iter_modules(list(search_path))),
                                *sys.builtin_module_names)))
