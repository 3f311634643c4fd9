"""Python modules read as text: found on a search path, parsed with `ast`, never imported.

`finder(search_path).resolve("pkg.mod.Name")` answers what a dotted path names the way an import
would, without executing anything: each level is located with
`importlib.machinery.PathFinder` (a package's ``__init__.py`` is read, not run; a namespace
package has no file), and a name is looked up among the module's top-level bindings — ``def``,
``class``, assignments, ``import`` aliases, ``from x import *`` — following re-exports into other
modules a bounded number of hops. What cannot be read (a C extension, a module ``__getattr__``, a
star import of an unreadable module, a name bound differently on different branches) is
`UNKNOWN`: it may exist, and nothing more is claimed about it.
"""

from __future__ import annotations

import ast
import builtins
import functools
import pkgutil
from dataclasses import dataclass
from typing import Literal

from stagegraph.config.static_source import (
    Binding,
    Module,
    Table,
    find_sub,
    find_top,
    from_spec,
    is_dynamic,
    table,
    top_level_names,
)

#: How many re-exports (``from a import b`` in ``__init__.py`` and the like) are followed.
MAX_HOPS = 12


Kind = Literal["module", "class", "function", "value"]


@dataclass(frozen=True)
class Found:
    """What a path names: a module, a class or function (with its ``def`` / ``class`` node), or a
    ``value`` (bound to something that exists, but not known to be a class or function)."""

    kind: Kind
    module: Module
    qualname: str = ""
    node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef | None = None
    owner: ast.ClassDef | None = None  # the class a method was found in

    @property
    def path(self) -> str:
        return f"{self.module.name}.{self.qualname}" if self.qualname else self.module.name


@dataclass(frozen=True)
class Missing:
    """``name`` is not in ``owner`` (a dotted module name; ``""``: not a top-level module)."""

    name: str
    owner: str
    candidates: tuple[str, ...]


class Unknown:
    """May exist; cannot be known without running code."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()
Lookup = Found | Missing | Unknown


@functools.lru_cache(maxsize=16)
def finder(search_path: tuple[str, ...]) -> StaticFinder:
    """The finder for one search path (modules it locates are remembered)."""
    return StaticFinder(search_path)


class StaticFinder:
    """Resolves dotted paths over ``search_path`` by reading source files."""

    def __init__(self, search_path: tuple[str, ...]) -> None:
        self.search_path = search_path
        self._modules: dict[str, Module | None] = {}

    # --- modules -------------------------------------------------------------------------------
    def module(self, name: str) -> Module | None:
        """The module ``name`` (``a.b.c``), found level by level, or None."""
        if name not in self._modules:
            head, _, rest = name.rpartition(".")
            if not head:
                found = from_spec(name, find_top(name, self.search_path), self.search_path)
            else:
                parent = self.module(head)
                found = None if parent is None else self.submodule(parent, rest)
            self._modules[name] = found
        return self._modules[name]

    def submodule(self, module: Module, name: str) -> Module | None:
        if module.paths is None:
            return None
        full = f"{module.name}.{name}"
        if full not in self._modules:
            self._modules[full] = from_spec(full, find_sub(full, module.paths), module.paths)
        return self._modules[full]

    def table(self, module: Module) -> Table | None:
        if module.file is None:
            return None
        return table(module.file, module.name, module.paths is not None)

    # --- names ---------------------------------------------------------------------------------
    def resolve(self, path: str) -> Lookup:
        """What ``pkg.mod.Name`` (or ``pkg.mod:Name``) names."""
        if ":" in path:
            module_name, _, attribute = path.partition(":")
            current: Lookup = self.module_lookup(module_name)
            parts = attribute.split(".") if attribute else []
        else:
            first, *parts = path.split(".")
            current = self.module_lookup(first)
        for i, part in enumerate(parts):
            if not isinstance(current, Found):
                break
            current = self.attribute(current, part, prefer_submodule=":" not in path
                                     and i < len(parts) - 1)
        return current

    def module_lookup(self, name: str) -> Lookup:
        """The module ``name`` as a lookup: `Missing` names the first level not found."""
        parts = name.split(".")
        for i in range(len(parts)):
            if self.module(".".join(parts[: i + 1])) is None:
                owner = ".".join(parts[:i])
                parent = self.module(owner) if owner else None
                candidates = (self.submodule_names(parent) if parent is not None
                              else top_level_names(self.search_path))
                return Missing(parts[i], owner, candidates)
        found = self.module(name)
        return UNKNOWN if found is None else Found("module", found)

    def attribute(self, owner: Found, name: str, *, prefer_submodule: bool = False,
                  hops: int = 0) -> Lookup:
        """``owner.name``: a module's member (or submodule), a class's own method."""
        if owner.kind == "module":
            if prefer_submodule:  # an import of a.b.c reaches b's submodule c, not b's attribute
                sub = self.submodule(owner.module, name)
                if sub is not None:
                    return Found("module", sub)
            return self.member(owner.module, name, hops)
        if owner.kind == "class" and isinstance(owner.node, ast.ClassDef):
            return _class_member(owner, name)
        return UNKNOWN

    def member(self, module: Module, name: str, hops: int = 0) -> Lookup:
        """The top-level name ``name`` of ``module``, following re-exports."""
        if hops > MAX_HOPS:
            return UNKNOWN
        known = self.table(module)
        if known is None:
            if module.file is not None or module.paths is None:  # unreadable, or an extension
                return UNKNOWN
            sub = self.submodule(module, name)  # a namespace package holds only its submodules
            return Found("module", sub) if sub else Missing(name, module.name,
                                                            self.submodule_names(module))
        binding = known.names.get(name)
        if binding is not None:
            return self._follow(module, name, binding, hops)
        sub = self.submodule(module, name)
        if sub is not None:
            return Found("module", sub)
        for star in known.stars:
            found = self._star_member(star, name, hops)
            if not isinstance(found, Missing):
                return found
        if name in known.exported or is_dynamic(module.file or "") \
                or any(self._star_unreadable(star) for star in known.stars):
            return UNKNOWN
        return Missing(name, module.name, self.names(module))

    def _star_member(self, star: str, name: str, hops: int) -> Lookup:
        source = self.module(star)
        if source is None:
            return UNKNOWN
        exported = self.table(source)
        if exported is not None and exported.exported and name not in exported.exported:
            return Missing(name, star, ())
        if name.startswith("_") and (exported is None or not exported.exported):
            return Missing(name, star, ())
        return self.member(source, name, hops + 1)

    def _star_unreadable(self, star: str) -> bool:
        source = self.module(star)
        return source is None or self.table(source) is None

    def _follow(self, module: Module, name: str, binding: Binding, hops: int) -> Lookup:
        if not binding.certain:  # bound on a branch that may not run: not known
            return UNKNOWN
        if isinstance(binding.node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            kind: Kind = "class" if isinstance(binding.node, ast.ClassDef) else "function"
            return Found(kind, module, name, binding.node)
        found: Lookup = Found("value", module, name)
        if binding.imported is not None:
            source, attribute = binding.imported
            found = self._imported(source, attribute, hops)
        elif binding.value is not None:
            found = self.expression(module, binding.value, hops + 1)
        if isinstance(found, Missing):  # the module itself would fail: not the caller's mistake
            return UNKNOWN
        return found

    def _imported(self, source: str, attribute: str | None, hops: int) -> Lookup:
        module = self.module(source)
        if module is None:
            return UNKNOWN
        if attribute is None:
            return Found("module", module)
        sub = self.submodule(module, attribute)  # `from pkg import mod` of a submodule
        if sub is not None:
            return Found("module", sub)
        return self.member(module, attribute, hops + 1)

    def expression(self, module: Module, node: ast.expr, hops: int = 0) -> Lookup:
        """What a name or attribute expression in ``module``'s top level refers to."""
        if hops > MAX_HOPS:
            return UNKNOWN
        if isinstance(node, ast.Subscript):  # Generic[T] is Generic
            return self.expression(module, node.value, hops)
        if isinstance(node, ast.Name):
            found = self.member(module, node.id, hops)
            return UNKNOWN if isinstance(found, Missing) and _is_builtin(node.id) else found
        if isinstance(node, ast.Attribute):
            owner = self.expression(module, node.value, hops + 1)
            if isinstance(owner, Found):
                return self.attribute(owner, node.attr, hops=hops + 1)
            return owner
        return UNKNOWN

    def spelled(self, module: Module, node: ast.expr) -> str | None:
        """The dotted path ``node`` spells through ``module``'s own imports, without reading the
        modules imported from: ``typing.Generic`` for ``Generic[T]`` after ``from typing import
        Generic``."""
        if isinstance(node, ast.Subscript):
            return self.spelled(module, node.value)
        if isinstance(node, ast.Attribute):
            head = self.spelled(module, node.value)
            return None if head is None else f"{head}.{node.attr}"
        known = self.table(module)
        if not isinstance(node, ast.Name) or known is None:
            return None
        binding = known.names.get(node.id)
        if binding is None:
            return f"builtins.{node.id}" if _is_builtin(node.id) else None
        if binding.imported is None or not binding.certain:
            return None
        source, attribute = binding.imported
        return source if attribute is None else f"{source}.{attribute}"

    # --- names for did-you-mean ----------------------------------------------------------------
    def names(self, module: Module) -> tuple[str, ...]:
        """The names ``module`` defines (its own, its submodules', star-imported ones)."""
        known = self.table(module)
        found = dict.fromkeys(self.submodule_names(module))
        if known is not None:
            found.update(dict.fromkeys((*known.names, *known.exported)))
            for star in known.stars:
                source = self.module(star)
                inner = None if source is None else self.table(source)
                if inner is not None:
                    found.update(dict.fromkeys(inner.exported or inner.names))
        return tuple(found)

    def submodule_names(self, module: Module) -> tuple[str, ...]:
        if module.paths is None:
            return ()
        return tuple(info.name for info in pkgutil.iter_modules(list(module.paths)))


def _class_member(owner: Found, name: str) -> Lookup:
    assert isinstance(owner.node, ast.ClassDef)
    for statement in owner.node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and statement.name == name:
            return Found("function", owner.module, f"{owner.qualname}.{name}", statement,
                         owner.node)
    return UNKNOWN  # inherited, or set at run time: not looked for


def _is_builtin(name: str) -> bool:
    return hasattr(builtins, name)
