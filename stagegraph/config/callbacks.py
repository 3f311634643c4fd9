"""Make a config's callbacks: built-in ones for real, the user's according to the mode.

Built-in callbacks (named by class name, ``AccuracyCallback``, or by a dotted path inside
``stagegraph``) are instantiated when the config is built: their declarations follow from their
arguments. A user callback (a dotted path outside stagegraph) is imported and instantiated only
in ``import`` mode (``run``). In ``static`` mode (``validate``, ``plan``, ``explain``) it is not
imported: `stagegraph.config.targets.static_callback` reads the class from its source, and its
stand-in (`StaticCallback.stand_in`) carries the class's literal declarations and event methods,
which point at the real code, so the compiler infers the keys it reads and writes as it does for
an imported class. Nested `_target_` arguments of a built-in callback are left as lazy `Target`
objects in static mode; a built-in callback that needs them made to know its declarations (a
torchmetrics metric) is planned from its class's declarations, with a warning (SF814).
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
from stagegraph.config.static_callback import StandIn
from stagegraph.config.targets import BUILTIN_CALLBACKS, builtin_callback_path, static_callback
from stagegraph.graph.callback import _DECLARATIONS, Callback
from stagegraph.graph.enums import EVENT_METHODS

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
        cls = self.builtin_class(target, path)
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
        events = [event for event in EVENT_METHODS
                  if getattr(cls, event) is not getattr(Callback, event)]
        return stand_in_class(cls.__module__, cls.__qualname__, declarations, events)(**kwargs)

    def builtin_class(self, target: str, path: Path) -> type[Callback] | None:
        at = self.document.value_at((*path, TARGET_KEY))
        dotted = target
        if "." not in target and ":" not in target:
            found = builtin_callback_path(target)
            if found is None:
                self.problems.error(
                    "SF812", f"there is no built-in callback {target!r}."
                    + did_you_mean(target, BUILTIN_CALLBACKS),
                    f"built-in callbacks: {', '.join(sorted(BUILTIN_CALLBACKS))}; name your own "
                    "callbacks by dotted path (my_module.MyCallback)", at)
                return None
            dotted = found
        try:
            value = locate(dotted)
        except ImportError as err:
            self.problems.error("SF812", f"cannot import {target!r}: {err}",
                                "name a built-in callback by its class name, such as "
                                "AccuracyCallback", at)
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
    def _stand_in(self, target: str, kwargs: dict[str, Any], path: Path) -> Callback | None:
        at = self.document.value_at((*path, TARGET_KEY))
        static = static_callback(target, search_path=self.search_path)
        if static is None:
            self.problems.warning(
                "SF814", f"the declarations of {target} cannot be read from its source, so "
                "validate and plan treat it as declaring nothing",
                "make it a class with literal declarations in a .py file, or check the real "
                "one with `stagegraph run --check`", at)
            module, _, name = target.replace(":", ".").rpartition(".")
            return stand_in_class(module, name, {}, ())(**kwargs)
        if static.is_callback is False:
            self.problems.error("SF813", f"{target} is not a stagegraph Callback subclass",
                                "callbacks subclass stagegraph.Callback", at)
            return None
        unknown = [name for name in static.unknown if name not in kwargs]
        if unknown:
            self.problems.warning(
                "SF814", f"{target}'s {', '.join(unknown)} cannot be known from its source (set "
                "by code, or in a base class that cannot be read), so validate and plan do not "
                "know them", "give them as literal class attributes, or as arguments here, or "
                "check the real callback with `stagegraph run --check`", at)
        callback = static.stand_in()(**kwargs)
        for name, value in kwargs.items():  # configured alike compares alike (migration)
            if name not in DECLARATION_ARGUMENTS and not name.startswith(("_", "on_")):
                setattr(callback, name, value)
        return callback


def stand_in_class(module: str, qualname: str, declarations: Mapping[str, Any],
                   events: Sequence[str]) -> type[Callback]:
    """A `Callback` subclass named ``module.qualname`` with ``declarations`` as class attributes
    and a no-op method per event of ``events``, taking any keyword arguments (`StandIn`)."""
    namespace: dict[str, Any] = {"__module__": module, "__qualname__": qualname,
                                 "__doc__": f"Stands for {module}.{qualname}, not made."}
    namespace.update(declarations)
    for event in events:
        namespace[event] = _no_op
    return type(qualname.rpartition(".")[2], (StandIn,), namespace)


def _no_op(self: Any, runner: Any) -> None:
    """An event the stood-for class handles; a stand-in is never run."""


def _has_target(value: Any) -> bool:
    if isinstance(value, Mapping):
        return TARGET_KEY in value or any(_has_target(v) for v in value.values())
    return isinstance(value, list) and any(_has_target(v) for v in value)
