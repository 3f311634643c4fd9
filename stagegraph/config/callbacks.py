"""Make a config's callbacks: built-in ones for real, the user's according to the mode.

Built-in callbacks (named by class name, ``AccuracyCallback``, or by a dotted path inside
``stagegraph``) are instantiated when the config is built: their declarations follow from their
arguments. A user callback (a dotted path outside stagegraph) is imported and instantiated only
in ``import`` mode (``run``). In ``static`` mode (``validate``, ``plan``, ``explain``) it is not
imported: a stand-in `Callback` subclass carries the class's literal declarations and event
methods, as `stagegraph.config.targets.static_callback` reads them from its source; its
methods point at the class's own source lines, so the compiler infers the keys their code reads
and writes as it does for an imported class. Nested `_target_` arguments of a built-in callback
are left as lazy `Target` objects in static mode.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stagegraph.compiler.diagnostics import did_you_mean
from stagegraph.config.document import Document
from stagegraph.config.factories import Target, instantiate, locate
from stagegraph.config.problems import Path, Problems
from stagegraph.config.schema import TARGET_KEY
from stagegraph.config.targets import StaticCallback, static_callback
from stagegraph.graph.callback import _DECLARATIONS, Callback
from stagegraph.graph.enums import EVENT_METHODS, CallbackNode, CallbackOrder, CallbackScope

#: Where the built-in callbacks are (imported by name: it is the runtime's package).
BUILTINS = "stagegraph.runtime.callbacks"
#: The keyword arguments every `Callback` takes (its declarations), which a stand-in keeps.
DECLARATION_ARGUMENTS = tuple(inspect.signature(Callback.__init__).parameters)[1:]


def builtin_callbacks() -> Mapping[str, type[Callback]]:
    """The built-in callback classes by class name."""
    return _Builtins(importlib.import_module(BUILTINS))


class _Builtins(Mapping[str, type[Callback]]):
    """The built-in classes by name, each looked up when first asked for: the package loads
    some lazily (``CheckpointCallback`` imports torch), so naming ``AccuracyCallback`` loads no
    torch, and neither does listing the names."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._names = [n for n in getattr(module, "__all__", ()) if n[:1].isupper()]

    def __getitem__(self, name: str) -> type[Callback]:
        value = getattr(self._module, name, None) if name in self._names else None
        if not (isinstance(value, type) and issubclass(value, Callback)):
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def is_builtin(path: str) -> bool:
    """Whether ``path`` names a built-in callback (a class name, or a path in stagegraph)."""
    return ("." not in path and ":" not in path) or path.startswith("stagegraph.")


class CallbackMaker:
    """Makes the callbacks of a config; problems go to ``problems`` at their positions."""

    def __init__(self, document: Document, problems: Problems, *, static: bool,
                 search_path: Sequence[str]) -> None:
        self.document = document
        self.problems = problems
        self.static = static
        self.search_path = list(search_path)
        self._builtins: Mapping[str, type[Callback]] | None = None

    @property
    def builtins(self) -> Mapping[str, type[Callback]]:
        if self._builtins is None:
            self._builtins = builtin_callbacks()
        return self._builtins

    def make(self, spec: Mapping[str, Any], path: Path) -> Callback | None:
        """The callback ``spec`` (a `_target_` mapping at ``path``) describes, or ``None``."""
        target = str(spec[TARGET_KEY])
        kwargs = {k: v for k, v in spec.items() if k != TARGET_KEY}
        if is_builtin(target):
            return self._builtin(target, kwargs, path)
        if self.static:
            return self._stand_in(target, kwargs, path)
        return self._imported(target, kwargs, path)

    # --- built-in -----------------------------------------------------------------------------
    def _builtin(self, target: str, kwargs: dict[str, Any], path: Path) -> Callback | None:
        cls = self._builtin_class(target, path)
        if cls is None:
            return None
        arguments = (self._lazy(kwargs) if self.static else instantiate(kwargs))
        try:
            return cls(**arguments)
        except Exception as err:
            unexpected = isinstance(err, TypeError) and "unexpected keyword" in str(err)
            if self.static and _has_target(kwargs) and not unexpected:
                return self._builtin_stand_in(cls, target, kwargs, path)
            self._builtin_failed(cls, err, kwargs, path)
            return None

    def _builtin_stand_in(self, cls: type[Callback], target: str, kwargs: dict[str, Any],
                          path: Path) -> Callback:
        """A built-in callback whose arguments name objects it needs made (a torchmetrics
        metric): validate does not make them, so it plans with the class's declarations."""
        self.problems.warning(
            "SF814", f"{target} needs the objects its arguments name to know its declarations, "
            "and validate and plan do not make them: they plan with its class's declarations",
            "give it reads=[...] and writes=[...], or check the run with `stagegraph run "
            "--check`", self.document.value_at((*path, TARGET_KEY)))
        declarations = {name: getattr(cls, name) for name in (*_DECLARATIONS, "kind")
                        if name in vars(cls)}
        events = {event: (cls.__module__, 0) for event in EVENT_METHODS
                  if getattr(cls, event) is not getattr(Callback, event)}
        stand = stand_in_class(cls.__module__, cls.__qualname__, declarations, events)
        return stand(**_declarations_of(kwargs))

    def _builtin_class(self, target: str, path: Path) -> type[Callback] | None:
        at = self.document.value_at((*path, TARGET_KEY))
        if "." not in target and ":" not in target:
            cls = self.builtins.get(target)
            if cls is None:
                self.problems.error(
                    "SF812", f"there is no built-in callback {target!r}."
                    + did_you_mean(target, self.builtins),
                    f"built-in callbacks: {', '.join(self.builtins)}; name your own callbacks "
                    "by dotted path (my_module.MyCallback)", at)
            return cls
        try:
            value = locate(target)
        except ImportError as err:
            self.problems.error("SF812", f"cannot import {target!r}: {err}",
                                f"name a built-in callback by its class name, such as "
                                f"{next(iter(self.builtins), 'AccuracyCallback')}", at)
            return None
        if not (isinstance(value, type) and issubclass(value, Callback)):
            self.problems.error("SF812", f"{target!r} is not a callback class",
                                "name a stagegraph.Callback subclass", at)
            return None
        return value

    def _builtin_failed(self, cls: type, err: Exception, kwargs: dict[str, Any],
                        path: Path) -> None:
        text = f"{type(err).__name__}: {err}"
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if isinstance(err, TypeError) and unexpected and unexpected.group(1) in kwargs:
            name = unexpected.group(1)
            params = [p for p in inspect.signature(cls).parameters if p != "declarations"]
            self.problems.error(
                "SF811", f"{cls.__name__} takes no argument {name!r}."
                + did_you_mean(name, [*params, *DECLARATION_ARGUMENTS]),
                f"{cls.__name__} takes: {', '.join(params)} (and the declarations "
                f"{', '.join(DECLARATION_ARGUMENTS)})", self.document.key_at((*path, name)))
            return
        self.problems.error("SF812", f"{cls.__name__}(...) cannot be made with these arguments: "
                            f"{text}", f"see {cls.__name__} in docs/callbacks.md",
                            self.document.value_at((*path, TARGET_KEY)))

    def _lazy(self, value: Any) -> Any:
        """Arguments with nested `_target_` mappings as uncalled `Target` objects."""
        if isinstance(value, Mapping) and TARGET_KEY in value:
            return Target(str(value[TARGET_KEY]),
                          {k: self._lazy(v) for k, v in value.items() if k != TARGET_KEY})
        if isinstance(value, Mapping):
            return {k: self._lazy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._lazy(v) for v in value]
        return value

    # --- the user's, imported -----------------------------------------------------------------
    def _imported(self, target: str, kwargs: dict[str, Any], path: Path) -> Callback | None:
        at = self.document.value_at((*path, TARGET_KEY))
        try:
            cls = locate(target)
        except Exception as err:
            self.problems.error("SF813", f"cannot import {target!r}: {type(err).__name__}: "
                                f"{err}", "the module must import without error, from the "
                                "config file's folder or an installed package", at)
            return None
        try:
            callback = cls(**instantiate(kwargs))
        except Exception as err:
            self.problems.error("SF813", f"{target}(...) raised {type(err).__name__}: {err}",
                                "give the class the arguments it takes", at)
            return None
        return callback  # the compiler reports an object that is not a Callback (SF105)

    # --- the user's, read from source ---------------------------------------------------------
    def _stand_in(self, target: str, kwargs: dict[str, Any], path: Path) -> Callback:
        static = static_callback(target, search_path=self.search_path)
        if static is None:
            self.problems.warning(
                "SF814", f"the declarations of {target} cannot be read from its source, so "
                "validate and plan treat it as declaring nothing",
                "make it a class with literal declarations in a .py file, or check the real "
                "one with `stagegraph run --check`",
                self.document.value_at((*path, TARGET_KEY)))
            module, _, name = target.replace(":", ".").rpartition(".")
            return stand_in_class(module, name, {}, {})(**_declarations_of(kwargs))
        return stand_in(static, kwargs)


def stand_in(static: StaticCallback, kwargs: Mapping[str, Any]) -> Callback:
    """A `Callback` standing for the class ``static`` describes, made with ``kwargs``: the
    declarations among them as the real class would take them, the others kept as attributes
    (so two entries configured alike compare alike)."""
    methods = dict(getattr(static, "methods", None) or {})
    events = getattr(static, "events", None) or {}
    for event in events:
        methods.setdefault(event, events[event] if isinstance(events, Mapping) else 0)
    # Only what the compiler reads: a stand-in keeps Callback's own __init__, state_dict...
    methods = {name: line for name, line in methods.items()
               if name in EVENT_METHODS or not (name.startswith("__") or hasattr(Callback, name))}
    cls = stand_in_class(static.module, static.qualname,
                         _normalised(getattr(static, "declarations", None) or {}),
                         {name: (static.file, line) for name, line in methods.items()})
    callback = cls(**_declarations_of(kwargs))
    for name, value in kwargs.items():
        if name not in DECLARATION_ARGUMENTS and not name.startswith(("_", "on_")):
            setattr(callback, name, value)
    return callback


def stand_in_class(module: str, qualname: str, declarations: Mapping[str, Any],
                   methods: Mapping[str, tuple[str, int]]) -> type[Callback]:
    """A `Callback` subclass named ``module.qualname`` with ``declarations`` as class
    attributes and a never-called method per entry of ``methods`` (name -> file, line)."""
    namespace: dict[str, Any] = {"__module__": module, "__qualname__": qualname,
                                 "__doc__": f"Stands for {module}.{qualname}, not imported."}
    namespace.update(declarations)
    for name, (file, line) in methods.items():
        namespace[name] = _method(name, file, line)
    return type(qualname.rpartition(".")[2], (Callback,), namespace)


def _method(name: str, file: str, line: int) -> Any:
    """A method that is never called, whose code object names ``name`` at ``file:line``: the
    compiler reads the real method's source there (`stagegraph.compiler.source.definition`).

    Its body names the runner's dictionaries and ``super`` so that the compiler does not skip it
    as code that accesses none of them.
    """
    def method(self: Any, runner: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a static stand-in callback is never run", runner.batch_metrics,
                           runner.loader_metrics, runner.epoch_metrics, runner.valid_metrics,
                           runner.output, runner.input, super)

    code = method.__code__
    if line > 0:
        code = code.replace(co_name=name, co_filename=file, co_firstlineno=line)
        if hasattr(code, "co_qualname"):
            code = code.replace(co_qualname=name)
    method.__code__ = code
    method.__name__ = method.__qualname__ = name
    return method


def _has_target(value: Any) -> bool:
    if isinstance(value, Mapping):
        return TARGET_KEY in value or any(_has_target(v) for v in value.values())
    return isinstance(value, list) and any(_has_target(v) for v in value)


def _declarations_of(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in DECLARATION_ARGUMENTS}


_ENUMS: dict[str, Any] = {"order": CallbackOrder, "node": CallbackNode, "scope": CallbackScope}


def _normalised(declarations: Mapping[str, Any]) -> dict[str, Any]:
    """Declarations as the class would hold them: ``'CallbackOrder.Metric'`` -> 20, lists ->
    tuples; names that are no declaration are dropped."""
    found: dict[str, Any] = {}
    for name, value in declarations.items():
        if name not in _DECLARATIONS and name != "kind":
            continue
        if name in _ENUMS and isinstance(value, str):
            member = value.rpartition(".")[2]
            enum = _ENUMS[name]
            value = enum[member] if member in enum.__members__ else value
        elif isinstance(value, list):
            value = tuple(value)
        found[name] = value
    return found
