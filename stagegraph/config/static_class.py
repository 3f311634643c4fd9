"""Signatures and class hierarchies read from source: what a `_target_` accepts, never guessed.

A function's signature is its ``def``; a class's is the ``__init__`` its method resolution order
reaches first, found through the base classes whose source can be read. Whatever could make the
text lie — a decorator that may wrap the function, a metaclass, ``__new__``, a base class with no
readable source (a C extension, a built-in type) — makes the signature not known (None).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from stagegraph.config.static_modules import Found, StaticFinder

#: Decorators that leave what a function accepts as its ``def`` says.
SAFE_DECORATORS = frozenset({"staticmethod", "classmethod", "final", "override",
                             "abstractmethod", "no_type_check", "cache", "lru_cache"})
#: Metaclasses that do not change how a class is called.
SAFE_METACLASSES = frozenset({"ABCMeta", "type"})
#: Bases that add no ``__init__`` (skipped without reading their module).
TRANSPARENT_BASES = frozenset({"abc.ABC", "typing.Generic", "typing_extensions.Generic",
                               "builtins.object"})
#: The root of every stagegraph callback, where a callback's readable hierarchy ends.
CALLBACK_ROOT = "stagegraph.graph.callback.Callback"


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: Literal["positional_only", "positional_or_keyword", "keyword_only"]
    required: bool


@dataclass(frozen=True)
class Signature:
    """What a call accepts, read from ``file:line``."""

    parameters: tuple[Parameter, ...]
    var_positional: bool
    var_keyword: bool
    file: str
    line: int

    @property
    def keywords(self) -> tuple[str, ...]:
        """The parameters that may be passed by keyword."""
        return tuple(p.name for p in self.parameters if p.kind != "positional_only")

    def accepts(self, keyword: str) -> bool:
        return self.var_keyword or keyword in self.keywords

    def missing(self, given: Collection[str], positional: int) -> tuple[str, ...]:
        """Required parameters neither among the first ``positional`` positional arguments
        nor in ``given`` keywords."""
        supplied, missing = positional, []
        for parameter in self.parameters:
            if parameter.kind != "keyword_only" and supplied > 0:
                supplied -= 1
            elif parameter.required and (parameter.kind == "positional_only"
                                         or parameter.name not in given):
                missing.append(parameter.name)
        return tuple(missing)


class Opaque:
    """A base class whose source cannot be read: what it defines is not known."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Opaque({self.text!r})"


Ancestor = Found | Opaque


def signature(found: Found, finder: StaticFinder) -> Signature | None:
    """What calling ``found`` accepts (a class: its ``__init__`` without ``self``), or None."""
    if found.kind == "class" and isinstance(found.node, ast.ClassDef):
        return class_signature(found, finder)
    if found.kind != "function" or isinstance(found.node, ast.ClassDef) or found.node is None:
        return None
    names = decorator_names(found.node)
    if not names <= SAFE_DECORATORS:
        return None
    if found.owner is None:
        return _signature(found.node, found.module.file or "", drop_first=False)
    if "staticmethod" in names or "classmethod" in names:  # through its class: Class.method
        return _signature(found.node, found.module.file or "", drop_first="classmethod" in names)
    return None  # a plain method reached through its class would need an instance


def class_signature(found: Found, finder: StaticFinder) -> Signature | None:
    """The signature of calling the class ``found``: its first ``__init__`` in MRO order. An
    ``__init__`` that hands its ``**kwargs`` to ``super().__init__`` (and does nothing else with
    them but read or set constant keys) accepts what the next ``__init__`` accepts."""
    lineage = mro(found, finder)
    classes = [a for a in lineage if isinstance(a, Found) and isinstance(a.node, ast.ClassDef)]
    if len(classes) < len(lineage) or not all(_plain(c.node) for c in classes):  # type: ignore[arg-type]
        return None  # a base that cannot be read, a metaclass, __new__...: calls are not known
    accepted: Signature | None = None
    forward: Forward | None = None
    for ancestor in classes:
        assert isinstance(ancestor.node, ast.ClassDef)
        init = class_members(ancestor.node).get("__init__")
        if init is None:
            continue
        if not isinstance(init, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                or not decorator_names(init) <= SAFE_DECORATORS:
            return None
        own = _signature(init, ancestor.module.file or "", drop_first=True)
        accepted = own if accepted is None or forward is None else _chain(accepted, forward, own)
        forward = passes_on(init)
        if forward is None:
            return accepted
    if accepted is None:  # object.__init__: no arguments
        line = found.node.lineno if found.node is not None else 0
        return Signature((), False, False, found.module.file or "", line)
    return accepted if forward is None else _chain(
        accepted, forward, Signature((), False, False, accepted.file, accepted.line))


@dataclass(frozen=True)
class Forward:
    """An ``__init__``'s unconditional ``super().__init__(..., **kwargs)``: the ``call``, and
    the constant keys its body reads (``used``) or gives a value (``defaulted``)."""

    call: ast.Call
    used: frozenset[str]
    defaulted: frozenset[str]


def passes_on(init: ast.FunctionDef | ast.AsyncFunctionDef) -> Forward | None:
    """How ``init`` hands its ``**kwargs`` on to the next ``__init__``, or None when it does
    not, or does something else with them too (then what it accepts is not known)."""
    kwargs = init.args.kwarg.arg if init.args.kwarg is not None else None
    call = next((s.value for s in init.body if isinstance(s, ast.Expr)
                 and _is_super_init(s.value, kwargs)), None)
    if kwargs is None or not isinstance(call, ast.Call):
        return None
    allowed = {id(k.value) for k in call.keywords if k.arg is None}
    used: set[str] = set()
    defaulted: set[str] = set()
    for node in ast.walk(init):
        access = constant_key(node, kwargs)
        if access is not None:
            key, owner, how = access
            allowed.add(id(owner))
            (defaulted if how in ("setdefault", "store") else used).add(key)
    if any(isinstance(n, ast.Name) and n.id == kwargs and id(n) not in allowed
           for n in ast.walk(init)):
        return None
    return Forward(call, frozenset(used), frozenset(defaulted))


def _is_super_init(node: ast.expr, kwargs: str | None) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(node, ast.Call) and isinstance(func, ast.Attribute)
            and func.attr == "__init__" and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name) and func.value.func.id == "super"
            and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == kwargs
                    for k in node.keywords))


def constant_key(node: ast.AST, kwargs: str) -> tuple[str, ast.Name, str] | None:
    """``("k", kwargs, how)`` when ``node`` is ``kwargs["k"]`` (how: ``load`` / ``store``) or
    ``kwargs.get/pop/setdefault("k", ...)`` (how: the method)."""
    if isinstance(node, ast.Subscript):
        owner, key = node.value, node.slice
        how = "load" if isinstance(node.ctx, ast.Load) else "store"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("get", "pop", "setdefault") and node.args:
        owner, key, how = node.func.value, node.args[0], node.func.attr
    else:
        return None
    if isinstance(owner, ast.Name) and owner.id == kwargs and isinstance(key, ast.Constant) \
            and isinstance(key.value, str):
        return key.value, owner, how
    return None


def _chain(outer: Signature, forward: Forward, inner: Signature) -> Signature:
    """``outer``'s signature when its ``**kwargs`` go on to ``inner`` through ``forward``."""
    if any(isinstance(a, ast.Starred) for a in forward.call.args):
        return outer  # *args on: which of inner's parameters they fill is not known
    explicit = {k.arg for k in forward.call.keywords if k.arg is not None}
    own = {p.name for p in outer.parameters}
    supplied, passed = len(forward.call.args), []
    for parameter in inner.parameters:
        if parameter.kind != "keyword_only" and supplied > 0:
            supplied -= 1
        elif parameter.kind != "positional_only" and parameter.name not in explicit | own:
            passed.append(Parameter(parameter.name, "keyword_only", parameter.required
                                    and parameter.name not in forward.defaulted))
    consumed = [Parameter(key, "keyword_only", False) for key in sorted(forward.used)
                if key not in own and key not in {p.name for p in passed}]
    return Signature((*outer.parameters, *passed, *consumed), outer.var_positional,
                     inner.var_keyword, outer.file, outer.line)


def mro(found: Found, finder: StaticFinder) -> tuple[Ancestor, ...]:
    """``found``'s method resolution order as far as source shows (C3, as Python computes it);
    an `Opaque` entry stands for a base that cannot be read, and what follows it is uncertain."""
    try:
        return _mro(found, finder, 0)
    except RecursionError:
        return (found, Opaque("..."))


@functools.lru_cache(maxsize=1024)
def _mro(found: Found, finder: StaticFinder, depth: int) -> tuple[Ancestor, ...]:
    assert isinstance(found.node, ast.ClassDef)
    if depth > 40:
        return (found, Opaque("..."))
    bases: list[Ancestor] = []
    for expression in found.node.bases:
        if finder.spelled(found.module, expression) in TRANSPARENT_BASES:
            continue
        base = finder.expression(found.module, expression)
        if isinstance(base, Found) and base.kind == "class" \
                and isinstance(base.node, ast.ClassDef):
            if base.path not in TRANSPARENT_BASES:
                bases.append(base)
        else:
            bases.append(Opaque(ast.unparse(expression)))
    lineages = [(b,) if isinstance(b, Opaque) else _mro(b, finder, depth + 1) for b in bases]
    merged = _c3([list(line) for line in lineages] + [list(bases)])
    return (found, *merged) if merged is not None else (found, Opaque("inconsistent bases"))


def _c3(sequences: list[list[Ancestor]]) -> list[Ancestor] | None:
    result: list[Ancestor] = []
    sequences = [s for s in sequences if s]
    while sequences:
        for sequence in sequences:
            head = sequence[0]
            if not any(head in s[1:] for s in sequences):
                break
        else:
            return None  # Python would refuse the class
        result.append(head)
        sequences = [s[1:] if s[0] == head else s for s in sequences]
        sequences = [s for s in sequences if s]
    return result


def class_members(node: ast.ClassDef) -> dict[str, ast.stmt]:
    """What a class body binds at its top level: name -> the (last) statement binding it."""
    members: dict[str, ast.stmt] = {}
    for statement in node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            members[statement.name] = statement
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) \
                else [statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    members[target.id] = statement
    return members


def decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    """The decorators' last names (``functools.lru_cache(maxsize=2)`` -> ``lru_cache``); a
    decorator that is not a name is named by its source text, so it is never safe."""
    names = set()
    for decorator in node.decorator_list:
        call = isinstance(decorator, ast.Call)
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.id if isinstance(target, ast.Name) else \
            target.attr if isinstance(target, ast.Attribute) else None
        names.add(ast.unparse(decorator) if name is None or (call and name != "lru_cache")
                  else name)
    return names


def _plain(node: ast.ClassDef) -> bool:
    """Whether calling a class with this in its MRO just runs ``__init__``."""
    members = class_members(node)
    return decorator_names(node) <= SAFE_DECORATORS and _plain_metaclass(node) \
        and "__new__" not in members and "__signature__" not in members


def _plain_metaclass(node: ast.ClassDef) -> bool:
    for keyword in node.keywords:
        if keyword.arg == "metaclass":
            value = keyword.value
            name = value.attr if isinstance(value, ast.Attribute) else getattr(value, "id", "")
            if name not in SAFE_METACLASSES:
                return False
    return True


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, file: str, *, drop_first: bool
               ) -> Signature:
    arguments = node.args
    positional = [*arguments.posonlyargs, *arguments.args]
    first_default = len(positional) - len(arguments.defaults)
    parameters = [Parameter(arg.arg, "positional_only" if i < len(arguments.posonlyargs)
                            else "positional_or_keyword", required=i < first_default)
                  for i, arg in enumerate(positional)]
    if drop_first and parameters:
        parameters = parameters[1:]
    parameters += [Parameter(arg.arg, "keyword_only", required=default is None)
                   for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults,
                                           strict=True)]
    return Signature(tuple(parameters), arguments.vararg is not None,
                     arguments.kwarg is not None, file, node.lineno)
