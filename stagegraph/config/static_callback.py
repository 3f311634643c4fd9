"""A user callback class read from its source, and a stand-in class the compiler can order.

`read_callback` reads a `Callback` subclass with `ast`, without importing its module: the literal
class-level declarations of each class in its hierarchy (``order = CallbackOrder.Metric``,
``reads = ("output.logits",)``...), the methods each defines, its ``__init__`` signature, file and
line. `StaticCallback.stand_in` turns that into a real `Callback` subclass — the same module and
qualified name, the same declarations and no-op methods of the same names, one class per class
of the hierarchy — so the compiler orders and checks it as it would the real class, as far as
declarations go. Each method of a stand-in carries where its real code is, so the compiler's
source inference (`compiler/inference.py`) reads the real method, not the no-op.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from typing import Any

from stagegraph.config.static_class import (
    CALLBACK_ROOT,
    Opaque,
    Signature,
    class_members,
    class_signature,
    constant_key,
    mro,
    passes_on,
)
from stagegraph.config.static_modules import Found, StaticFinder
from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import EVENT_METHODS, CallbackNode, CallbackOrder, CallbackScope

#: The class-level declarations a callback may make (`stagegraph.graph.Callback`'s).
DECLARATIONS = ("order", "node", "scope", "after", "before", "reads", "writes", "kind",
                "claims", "needs", "watch", "watch_minimize", "lints")
#: The attribute a stand-in's method carries: ``(file, first line, name)`` of the real method,
#: read by `stagegraph.compiler.inference` in place of the no-op's own code.
STATIC_SOURCE = "__stagegraph_source__"
_ENUMS: dict[str, Any] = {"CallbackOrder": CallbackOrder, "CallbackNode": CallbackNode,
                          "CallbackScope": CallbackScope}
_CALLBACK_KEYWORDS = frozenset(("order", "node", "scope", "after", "before", "reads", "writes",
                                "claims", "needs", "watch", "watch_minimize", "lints"))


@dataclass(frozen=True)
class StaticClass:
    """One class of a callback's hierarchy as its source shows it."""

    module: str
    qualname: str
    file: str
    line: int
    declarations: dict[str, Any] = field(default_factory=dict)  # literal values it sets
    unknown: tuple[str, ...] = ()  # declarations it sets to something not literal
    methods: dict[str, int | None] = field(default_factory=dict)  # name -> first line


@dataclass(frozen=True)
class StaticCallback:
    """A callback class read without importing it.

    ``classes``: its hierarchy in method resolution order, most derived first, up to
    stagegraph's `Callback`; ``complete``: False when a base class could not be read (what it
    would declare or define is then not known); ``is_callback``: whether it derives from
    `Callback` (None: not known); ``init``: its ``__init__`` signature (None: not known);
    ``forwards``: whether keyword arguments reach `Callback.__init__` (its declaration
    overrides ``after=``, ``order=``...).
    """

    path: str
    file: str
    line: int
    classes: tuple[StaticClass, ...]
    complete: bool
    is_callback: bool | None
    init: Signature | None
    forwards: bool

    @property
    def declarations(self) -> dict[str, Any]:
        """The literal class-level declarations in effect (a derived class's win); unset ones
        are left out. One also in `unknown` may be changed when the class is instantiated."""
        found: dict[str, Any] = {}
        for name in DECLARATIONS:
            for klass in self.classes:  # the first class that sets it decides
                if name in klass.declarations:
                    found[name] = klass.declarations[name]
                if name in klass.declarations or name in klass.unknown:
                    break
        return found

    @property
    def unknown(self) -> tuple[str, ...]:
        """Declarations whose value is not known: set to something not literal, given to the
        instance by an ``__init__``, or possibly set by a base class that could not be read."""
        unknown: list[str] = []
        for name in DECLARATIONS:
            for klass in self.classes:
                if name in klass.unknown:
                    unknown.append(name)
                if name in klass.unknown or name in klass.declarations:
                    break
            else:
                if not self.complete:
                    unknown.append(name)
        return tuple(unknown)

    @property
    def events(self) -> tuple[str, ...]:
        """The event methods its classes define (in event order)."""
        defined = {name for klass in self.classes for name in klass.methods}
        return tuple(e for e in EVENT_METHODS if e in defined)

    def stand_in(self) -> type[Callback]:
        """A `Callback` subclass with this class's declarations and no-op methods of the same
        names, one class per class of the hierarchy, so that ``type(x).__mro__`` mirrors it
        (above a `StandIn` base). Instantiated with the config's keyword arguments, it passes
        those `Callback.__init__` takes on when the real ``__init__`` does (``forwards``) and
        ignores the rest. Made once per `StaticCallback`."""
        return self._stand_in

    @functools.cached_property
    def _stand_in(self) -> type[Callback]:
        base: type[Callback] = StandIn
        for klass in reversed(self.classes):
            namespace: dict[str, Any] = {"__module__": klass.module,
                                         "__qualname__": klass.qualname,
                                         "__doc__": f"Stand-in for {klass.module}.{klass.qualname}"
                                                    f" read from {klass.file}:{klass.line}."}
            namespace.update(klass.declarations)
            for name, line in klass.methods.items():
                namespace[name] = _no_op(klass, name, line, self.forwards)
            base = type(klass.qualname.rpartition(".")[2], (base,), namespace)
        return base


class StandIn(Callback):
    """The base of every stand-in: takes any keyword arguments, passing `Callback`'s on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(**{k: v for k, v in kwargs.items() if k in _CALLBACK_KEYWORDS})


@functools.lru_cache(maxsize=256)
def read_callback(found: Found, finder: StaticFinder) -> StaticCallback | None:
    """The callback class ``found`` as its source shows it; None unless it is a class. The same
    class read twice is the same `StaticCallback` (so it has one stand-in)."""
    if found.kind != "class" or not isinstance(found.node, ast.ClassDef):
        return None
    classes: list[StaticClass] = []
    complete, is_callback = True, False
    for ancestor in mro(found, finder):
        if isinstance(ancestor, Opaque):
            complete = False
            break
        if ancestor.path == CALLBACK_ROOT:
            is_callback = True
            break
        classes.append(_read_class(ancestor))
    init = class_signature(found, finder)
    return StaticCallback(
        path=found.path, file=found.module.file or "", line=found.node.lineno,
        classes=tuple(classes), complete=complete,
        is_callback=True if is_callback else (None if not complete else False),
        init=init, forwards=_forwards(found, finder))


def _read_class(found: Found) -> StaticClass:
    assert isinstance(found.node, ast.ClassDef)
    declarations: dict[str, Any] = {}
    unknown: list[str] = []
    methods: dict[str, int | None] = {}
    for name, statement in class_members(found.node).items():
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not name.startswith("__") or name == "__init__":
                methods[name] = min([statement.lineno,
                                     *(d.lineno for d in statement.decorator_list)])
        elif name in DECLARATIONS and isinstance(statement, (ast.Assign, ast.AnnAssign)):
            value = literal(statement.value)
            if value is _NOT_LITERAL:
                unknown.append(name)
            else:
                declarations[name] = value
        elif name.startswith("on_"):  # an event bound to some other callable
            methods[name] = None
    for statement in found.node.body:  # a declaration set on some branch: not known
        if not isinstance(statement, (ast.Assign, ast.AnnAssign, ast.FunctionDef,
                                      ast.AsyncFunctionDef, ast.ClassDef, ast.Expr, ast.Pass)):
            for node in ast.walk(statement):
                if isinstance(node, ast.Name) and node.id in DECLARATIONS \
                        and isinstance(node.ctx, ast.Store):
                    declarations.pop(node.id, None)
                    unknown.append(node.id)
    init = class_members(found.node).get("__init__")
    if isinstance(init, (ast.FunctionDef, ast.AsyncFunctionDef)):
        unknown.extend(_set_by_init(init))
    return StaticClass(found.module.name, found.qualname, found.module.file or "",
                       found.node.lineno, declarations, tuple(dict.fromkeys(unknown)), methods)


def _set_by_init(init: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Declarations ``init`` may give the instance: ``self.reads = ...``, a constant key of
    its ``**kwargs`` set or defaulted, a keyword of its ``super().__init__(...)`` call."""
    positional = [*init.args.posonlyargs, *init.args.args]
    own = positional[0].arg if positional else None
    kwargs = init.args.kwarg.arg if init.args.kwarg is not None else None
    found = []
    for node in ast.walk(init):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == own:
            found.append(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "__init__":
            found.extend(k.arg for k in node.keywords if k.arg is not None)
        access = None if kwargs is None else constant_key(node, kwargs)
        if access is not None and access[2] in ("setdefault", "store"):
            found.append(access[0])
    return [name for name in found if name in DECLARATIONS]


_NOT_LITERAL = object()


def literal(node: ast.expr | None) -> Any:
    """The value of a literal declaration: constants, tuples, lists, dicts, members of
    `CallbackOrder` / `CallbackNode` / `CallbackScope` named through any prefix
    (``sg.CallbackOrder.Metric``), and sums and differences of ints; else `_NOT_LITERAL`."""
    if node is None:
        return _NOT_LITERAL
    if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
        owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
        enum = _ENUMS.get(owner)
        return enum.__members__.get(node.attr, _NOT_LITERAL) if enum else _NOT_LITERAL
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        left, right = literal(node.left), literal(node.right)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right)):
            return left + right if isinstance(node.op, ast.Add) else left - right
        return _NOT_LITERAL
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _forwards(found: Found, finder: StaticFinder) -> bool:
    """Whether keyword arguments reach `Callback.__init__`: every ``__init__`` on the way hands
    its ``**kwargs`` on with ``super().__init__(..., **kwargs)`` (anything else is not known, so
    not assumed)."""
    for ancestor in mro(found, finder):
        if isinstance(ancestor, Opaque) or not isinstance(ancestor.node, ast.ClassDef):
            return False
        if ancestor.path == CALLBACK_ROOT:
            return True
        init = class_members(ancestor.node).get("__init__")
        if init is not None and not (isinstance(init, (ast.FunctionDef, ast.AsyncFunctionDef))
                                     and passes_on(init) is not None):
            return False
    return False


def _no_op(klass: StaticClass, name: str, line: int | None, forwards: bool) -> Any:
    if name == "__init__":
        def method(self: Callback, *args: Any, **kwargs: Any) -> None:
            passed = {k: v for k, v in kwargs.items() if k in _CALLBACK_KEYWORDS}
            Callback.__init__(self, **(passed if forwards else {}))
    else:
        def method(self: Callback, *args: Any, **kwargs: Any) -> None:
            return None
    method.__name__ = name
    method.__qualname__ = f"{klass.qualname}.{name}"
    method.__module__ = klass.module
    if line is not None:
        setattr(method, STATIC_SOURCE, (klass.file, line, name))
    return method
