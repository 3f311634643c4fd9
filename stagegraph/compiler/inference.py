"""Reads and writes inferred from a callback's code: constant-key accesses, read with `ast`.

A callback that writes ``runner.batch_metrics["accuracy"] = ...`` or reads
``runner.output["logits"]`` has stated part of its dataflow in its code. This module finds those
accesses in the source of a callback class's methods (and of the user classes it inherits from;
stagegraph's own callbacks declare theirs) and turns each into an `InferredAccess` with its
``file:line``. Nothing is imported or executed: the source text is parsed, and source that cannot
be read (a class made by ``type(...)`` or ``exec``, a C extension) yields nothing.

Recognised, on any expression ``x`` and with a string constant ``"K"``::

    x.batch_metrics["K"]    -> metric.K          x.loader_metrics["K"] -> loader_metric.K
    x.output["K"]           -> output.K          x.epoch_metrics["K"]  -> epoch_metric.K
    x.input["K"]            -> batch.K           x.valid_metrics["K"]  -> valid_metric.K

``x.D["K"]`` and ``x.D.get("K")`` read; ``x.D["K"] = ...``, ``x.D.setdefault("K", ...)`` and
``x.D.update({"K": ...})`` / ``x.D.update(K=...)`` write; ``x.D["K"] += ...`` reads and writes.
A local name bound only to ``x.D`` in a method (``metrics = runner.batch_metrics``) counts as
``x.D``. Keys that are not string constants are not known, so they are left out. An access the
code may do without — in a branch that may be skipped, or a ``.get`` — is marked ``optional``.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType
from typing import Any

from stagegraph.compiler.plan import InferredAccess
from stagegraph.compiler.source import definition, definition_at
from stagegraph.graph.callback import Callback

#: Set on a method of a config file's callback stand-in (`stagegraph.config.static_callback`):
#: ``(file, first line, name)`` of the real method, whose source is read instead of the no-op's.
STATIC_SOURCE = "__stagegraph_source__"

#: The runner's dictionaries and the namespace of their keys.
ATTRIBUTES = {
    "batch_metrics": "metric",
    "output": "output",
    "input": "batch",
    "loader_metrics": "loader_metric",
    "epoch_metrics": "epoch_metric",
    "valid_metrics": "valid_metric",
}


def infer_accesses(cls: type) -> tuple[InferredAccess, ...]:
    """Every constant-key access in the code of ``cls``, in source order (derived class first).

    Methods of base classes count where they run: a base's method that a subclass overrides
    counts only when the override calls it through ``super()``. ``Callback``, ``object`` and
    stagegraph's built-in callbacks are skipped. Cached per class. For example, in
    ``my_callbacks.py``::

        class Reporter(sg.Callback):
            def on_batch_end(self, runner):
                print(runner.batch_metrics["accuracy"])      # line 14

    ``infer_accesses(Reporter)`` is ``(InferredAccess(key='metric.accuracy', access='read',
    where='my_callbacks.py:14', event='on_batch_end'),)``.
    """
    try:
        return _infer(cls)
    except TypeError:  # an unhashable class (a metaclass defining __eq__): read it uncached
        return _infer.__wrapped__(cls)


@functools.lru_cache(maxsize=4096)
def _infer(cls: type) -> tuple[InferredAccess, ...]:
    found: list[InferredAccess] = []
    reaches_base: dict[str, bool] = {}  # method name -> does the definition seen so far call up
    for klass in cls.__mro__:
        if not _is_user_class(klass):
            continue
        for method in _methods(klass):
            if reaches_base.get(method.name, True):
                found.extend(method.accesses)
                reaches_base[method.name] = method.name in method.supers
    return tuple(found)


def infer_function(function: Any) -> tuple[InferredAccess, ...]:
    """The constant-key accesses in a plain function's code (a batch handler's), in source order.

    Nothing when its source cannot be read; never raises for a user's function.
    """
    try:
        method = _method(getattr(function, "__name__", "handler"), function)
    except (TypeError, ValueError, SyntaxError):
        return ()
    return () if method is None else method.accesses


def _is_user_class(klass: type) -> bool:
    module = getattr(klass, "__module__", "") or ""
    return klass not in (Callback, object) and not (
        module == "stagegraph" or module.startswith("stagegraph."))


@dataclass(frozen=True)
class _Method:
    """What one method's code shows: its accesses and the methods it calls through super()."""

    name: str
    accesses: tuple[InferredAccess, ...]
    supers: frozenset[str]


@functools.lru_cache(maxsize=4096)
def _methods(klass: type) -> tuple[_Method, ...]:
    """The methods ``klass`` itself defines, each read from its source (or skipped)."""
    methods = []
    for name, value in list(vars(klass).items()):
        for function in _functions(value):
            method = _method(name, function)
            if method is not None:
                methods.append(method)
    return tuple(methods)


def _method(name: str, function: Any) -> _Method | None:
    static = getattr(function, STATIC_SOURCE, None)
    code = getattr(function, "__code__", None)
    if static is not None:  # a config file's stand-in: its real code is at (file, line, name)
        source = definition_at(*static)
    elif code is None or code.co_name == "<lambda>":
        return None
    elif not _mentions(code):  # its code names no runner dictionary nor super(): nothing to read
        return _Method(name, (), frozenset())
    else:
        source = definition(function)
    if source is None:
        return None
    aliases = _aliases(source.tree) if _MAY_ALIAS(source.text) else {}
    finder = _Finder(name, os.path.basename(source.filename), source.first_line, aliases)
    finder.visit(source.tree)
    accesses = sorted(finder.accesses, key=_line)  # source order, not visiting order
    return _Method(name, tuple(accesses), frozenset(finder.supers))


_NAMES = frozenset((*ATTRIBUTES, "super"))
#: A dictionary used other than by subscript or method: perhaps bound to a name.
_MAY_ALIAS = re.compile(r"\.(?:" + "|".join(ATTRIBUTES) + r")\b(?!\s*[\[.])").search


def _mentions(code: CodeType) -> bool:
    """Whether ``code`` (or a function or class nested in it) names a dictionary or super."""
    return not _NAMES.isdisjoint(code.co_names) or any(
        _mentions(const) for const in code.co_consts if isinstance(const, CodeType))


def _line(access: InferredAccess) -> int:
    return int(access.where.rsplit(":", 1)[1])


def _functions(value: Any) -> Iterator[Any]:
    """The plain functions behind a class attribute (methods, static/class methods, properties)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        yield from (f for f in (value.fget, value.fset) if inspect.isfunction(f))
    elif inspect.isfunction(value):
        try:
            yield inspect.unwrap(value)
        except ValueError:  # a cycle of __wrapped__
            return


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local names bound to a runner dictionary and to nothing else: name -> namespace."""
    alias_targets: dict[int, str] = {}
    stores: list[tuple[str, int]] = []  # every binding of a name: (name, id of its node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            stores.append((node.id, id(node)))
        elif isinstance(node, ast.arg):
            stores.append((node.arg, 0))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            space = _dictionary(node.value)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if space is not None:
                alias_targets.update((id(t), space) for t in targets if isinstance(t, ast.Name))
    bound: dict[str, set[str | None]] = {}
    for name, node_id in stores:
        bound.setdefault(name, set()).add(alias_targets.get(node_id))
    return {name: space for name, spaces in bound.items()
            if len(spaces) == 1 and (space := next(iter(spaces))) is not None}


def _dictionary(node: ast.AST) -> str | None:
    """The namespace when ``node`` is ``<expr>.batch_metrics`` and the like."""
    if isinstance(node, ast.Attribute):
        return ATTRIBUTES.get(node.attr)
    return None


def _constant(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


class _Finder(ast.NodeVisitor):
    """Collects the accesses in one method's tree."""

    def __init__(self, event: str, filename: str, first_line: int, aliases: dict[str, str]):
        self.event, self.filename, self.first_line = event, filename, first_line
        self.aliases = aliases
        self.accesses: list[InferredAccess] = []
        self.supers: set[str] = set()
        self.branches = 0  # how many branches that may be skipped enclose the current node

    def _space(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        return _dictionary(node)

    def _add(self, space: str, key: str | None, access: str, node: ast.AST, *,
             optional: bool = False) -> None:
        if key is None:
            return
        line = self.first_line + getattr(node, "lineno", 1) - 1
        self.accesses.append(InferredAccess(
            key=f"{space}.{key}", access=access, where=f"{self.filename}:{line}",  # type: ignore[arg-type]
            event=self.event, optional=optional or self.branches > 0))

    # --- branches the code may skip: what is inside them is optional --------------------------
    def _branch(self, *parts: ast.AST | list[Any] | None) -> None:
        self.branches += 1
        for part in parts:
            for node in part if isinstance(part, list) else [part]:
                if node is not None:
                    self.visit(node)
        self.branches -= 1

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._branch(node.body, node.orelse)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        self._branch(node.body, node.orelse)

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        self._branch(node.body, node.orelse)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.visit(node.values[0])
        self._branch(node.values[1:])

    def visit_Try(self, node: ast.Try) -> None:
        if not node.handlers:  # try/finally skips nothing
            self.generic_visit(node)
            return
        self._branch(node.body, node.handlers, node.orelse)
        for statement in node.finalbody:
            self.visit(statement)

    def visit_TryStar(self, node: Any) -> None:  # `except*`, from Python 3.11
        self.visit_Try(node)

    def visit_With(self, node: ast.With) -> None:
        if not any(_is_suppress(item.context_expr) for item in node.items):
            self.generic_visit(node)
            return
        for item in node.items:
            self.visit(item)
        self._branch(node.body)  # `with suppress(KeyError):` may skip the rest of its body

    def visit_Match(self, node: Any) -> None:  # ast.Match, from Python 3.10
        self.visit(node.subject)
        self._branch(node.cases)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Subscript):
            space = self._space(target.value)
            if space is not None:  # `d["K"] += 1` reads before it writes (the write: below)
                self._add(space, _constant(target.slice), "read", target)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        space = self._space(node.value)
        if space is not None and isinstance(node.ctx, (ast.Load, ast.Store)):
            access = "read" if isinstance(node.ctx, ast.Load) else "write"
            self._add(space, _constant(node.slice), access, node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            space = self._space(func.value)
            if space is not None:
                self._method_call(space, func.attr, node)
            if _is_super_call(func.value):
                self.supers.add(func.attr)
        self.generic_visit(node)

    def _method_call(self, space: str, method: str, node: ast.Call) -> None:
        first = node.args[0] if node.args else None
        if method == "get":  # tolerates a missing key
            self._add(space, _constant(first), "read", node, optional=True)
        elif method == "setdefault":
            self._add(space, _constant(first), "write", node)
        elif method == "update":
            if isinstance(first, ast.Dict):
                for key in first.keys:
                    self._add(space, _constant(key), "write", key or node)
            for keyword in node.keywords:
                self._add(space, keyword.arg, "write", keyword)


def _is_suppress(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Name) and func.id == "suppress") or (
        isinstance(func, ast.Attribute) and func.attr == "suppress")


def _is_super_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "super")
