"""Lazy factories for what a config names by `_target_`: the runtime calls them, never validate.

A `Target` imports its dotted path only when called, then calls it with the positional
arguments the runtime passes (none for a model, the optimizer for a scheduler) and its keyword
arguments, each nested `_target_` mapping among them instantiated first (depth-first). An
`OptimizerFactory` passes the model's parameters, and hands stagegraph's own optimizer options
to `stagegraph.runtime.optim` (the runtime calls its ``for_stage`` with what the stage knows: the
train loader's batch size, the optimizer state an earlier stage left). A `NamedLoader` takes one
loader out of what a loader factory returns for a stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from stagegraph.config.schema import TARGET_KEY

#: Builds an optimizer with stagegraph's options; resolved by name when a run needs it.
BUILD_OPTIMIZER = "stagegraph.runtime.optim.build_optimizer"
#: The same, as the factory the runtime builds a stage's optimizer with.
OPTIMIZER = "stagegraph.runtime.optim.optimizer"


def locate(path: str) -> Any:
    """The object ``path`` names: ``pkg.module.Name`` or ``pkg.module:Name.attr``.

    The longest importable module prefix is imported; an ImportError raised inside a module
    that exists propagates, so a missing dependency is not mistaken for a wrong path.
    """
    module_name, colon, attrs = path.partition(":")
    if colon:
        return _getattrs(importlib.import_module(module_name), attrs.split("."), path)
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
                continue
            raise
        return _getattrs(module, parts[cut:], path)
    raise ModuleNotFoundError(f"no module named {parts[0]!r} (for {path!r})", name=parts[0])


def _getattrs(value: Any, names: Sequence[str], path: str) -> Any:
    for name in names:
        try:
            value = getattr(value, name)
        except AttributeError:
            raise ImportError(f"{path!r}: {getattr(value, '__name__', value)!r} has no "
                              f"{name!r}") from None
    return value


def instantiate(value: Any) -> Any:
    """``value`` with every `_target_` mapping in it called (innermost first)."""
    if isinstance(value, Mapping) and TARGET_KEY in value:
        kwargs = {k: v for k, v in value.items() if k != TARGET_KEY}
        return Target(str(value[TARGET_KEY]), kwargs)()
    if isinstance(value, Mapping):
        return {k: instantiate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [instantiate(v) for v in value]
    if isinstance(value, Target):
        return value()
    return value


class Target:
    """``path`` called with ``kwargs`` when the runtime calls it."""

    def __init__(self, path: str, kwargs: Mapping[str, Any] | None = None) -> None:
        self.path = path
        self.kwargs: dict[str, Any] = dict(kwargs or {})

    @property
    def __name__(self) -> str:  # the runtime names a failing factory by it
        return self.path

    def __call__(self, *args: Any) -> Any:
        return locate(self.path)(*args, **instantiate(self.kwargs))

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and isinstance(other, Target)
                and (other.path, other.kwargs) == (self.path, self.kwargs))

    def __hash__(self) -> int:
        return hash((type(self), self.path))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.path}({args})"


class OptimizerFactory(Target):
    """``path(model.parameters(), **kwargs)``; with stagegraph's optimizer options
    (``layerwise_params``, ``no_bias_weight_decay``, ``lr_linear_scaling``), built by
    `stagegraph.runtime.optim.build_optimizer`."""

    def __init__(self, path: str, kwargs: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        super().__init__(path, kwargs)
        self.options = {k: v for k, v in (options or {}).items() if v is not None}

    def __call__(self, model: Any) -> Any:
        try:
            build = locate(BUILD_OPTIMIZER)
        except ImportError:
            build = None
        kwargs = instantiate(self.kwargs)
        if build is not None:
            return build(model, locate(self.path), kwargs, **self.options)
        if self.options:
            raise RuntimeError(f"{', '.join(self.options)} need {BUILD_OPTIMIZER}, which this "
                               "version of stagegraph does not have")
        return locate(self.path)(model.parameters(), **kwargs)

    @property
    def load_from_previous_stage(self) -> bool:
        """Whether the stage's optimizer starts from an earlier stage's state."""
        return bool(self.options.get("load_from_previous_stage"))

    def for_stage(self, model: Any, context: Any) -> Any:
        """As the runtime builds it at stage start: ``context`` is a
        `stagegraph.runtime.optim.StageContext`."""
        factory = locate(OPTIMIZER)(locate(self.path), **self.options,
                                    **instantiate(self.kwargs))
        return factory.for_stage(model, context)

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and isinstance(other, OptimizerFactory) \
            and other.options == self.options

    __hash__ = Target.__hash__


class StageLoaders:
    """One stage's call of a loader factory: made once, when the first loader is taken, and
    forgotten once every loader is taken."""

    def __init__(self, factory: Target, names: Sequence[str]) -> None:
        self.factory = factory
        self.names = tuple(names)
        self._built: dict[str, Any] | None = None
        self._left: set[str] = set()

    def take(self, name: str) -> Any:
        if self._built is None:
            built = self.factory()
            if not isinstance(built, Mapping):
                raise TypeError(f"loader factory {self.factory.path} returned "
                                f"{type(built).__name__}, not a mapping {{name: loader}}")
            missing = [n for n in self.names if n not in built]
            if missing:
                raise KeyError(f"loader factory {self.factory.path} returned loaders "
                               f"{', '.join(map(str, built)) or 'none'}, not "
                               f"{', '.join(missing)}; list its loaders in _names_: [...]")
            self._built, self._left = dict(built), set(self.names)
        loader = self._built[name]
        self._left.discard(name)
        if not self._left:
            self._built = None
        return loader


class NamedLoader:
    """The loader ``name`` of a `StageLoaders`."""

    def __init__(self, source: StageLoaders, name: str) -> None:
        self.source = source
        self.name = name

    @property
    def __name__(self) -> str:
        return f"{self.source.factory.path}()[{self.name!r}]"

    def __call__(self) -> Any:
        return self.source.take(self.name)

    def __repr__(self) -> str:
        return self.__name__
