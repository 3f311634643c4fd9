"""Build the `Experiment` a validated config describes.

Components and loaders become lazy factories (`stagegraph.config.factories`), called by the
runtime; callbacks are made by `CallbackMaker` (built-in ones now, the user's imported or read
from source by mode). A stage without loaders of its own uses the experiment's ``loaders:``.
Every `_target_` is first checked statically (`stagegraph.config.targets.check_target`): a path
that names nothing (SF810) and a keyword argument the target does not take (SF811) are located
problems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stagegraph.config.callbacks import CallbackMaker, is_builtin
from stagegraph.config.document import Document
from stagegraph.config.factories import (
    NamedLoader,
    OptimizerFactory,
    StageLoaders,
    Target,
    instantiate,
    locate,
)
from stagegraph.config.problems import ConfigProblem, Path, Problems
from stagegraph.config.schema import (
    COMPONENT_KEYS,
    NAMES_KEY,
    OPTIMIZER_OPTIONS,
    STAGE_PARAMS,
    TARGET_KEY,
)
from stagegraph.config.targets import check_target
from stagegraph.graph.enums import is_infer_stage
from stagegraph.graph.experiment import Experiment
from stagegraph.graph.handler import BatchHandler, FunctionHandler

#: How many positional arguments the runtime passes each component (scheduler: the optimizer).
POSITIONAL = {"model": 0, "criterion": 0, "optimizer": 1, "scheduler": 1}
#: The loaders a factory returns when ``_names_`` does not say.
DEFAULT_LOADER_NAMES = ("train", "valid")
DEFAULT_INFER_LOADER_NAMES = ("infer",)


class ConfigExperiment(Experiment):
    """An `Experiment` built from a config file; ``document`` is the effective config (after
    defaults, interpolation and ``--set``) with every value's position, which diagnostics about
    the experiment are located by (`stagegraph.config.positions`)."""

    document: Document
    #: Warnings about the config file (SF814), printed before the compiler's diagnostics.
    notes: list[ConfigProblem]


class Builder:
    """Builds a `ConfigExperiment` from a validated document."""

    def __init__(self, document: Document, problems: Problems, *, static: bool,
                 search_path: Sequence[str]) -> None:
        self.document = document
        self.problems = problems
        self.static = static
        self.search_path = list(search_path)
        self.callbacks = CallbackMaker(document, problems, static=static,
                                       search_path=search_path)

    def experiment(self) -> ConfigExperiment:
        data: dict[str, Any] = self.document.data
        components = {key: self.component(key, data.get(key), (key,)) for key in COMPONENT_KEYS}
        experiment = ConfigExperiment(
            data["experiment"], seed=data.get("seed", 42), device=data.get("device", "auto"),
            lints=data.get("lints") or {}, fast_path=data.get("fast_path", True),
            compile=data.get("compile") or False, deterministic=data.get("deterministic", False),
            handler=self.handler(data.get("handler"), ("handler",)), **components)
        experiment.document = self.document
        for name, stage in data["stages"].items():
            self.stage(experiment, name, stage or {})
        return experiment

    def stage(self, experiment: Experiment, name: str, stage: Mapping[str, Any]) -> None:
        path: Path = ("stages", name)
        params = {k: stage[k] for k in STAGE_PARAMS if stage.get(k) is not None}
        loaders, loaders_path = stage.get("loaders"), (*path, "loaders")
        if loaders is None and self.document.data.get("loaders") is not None:
            loaders, loaders_path = self.document.data["loaders"], ("loaders",)
        callbacks = {}
        for cb_name, spec in (stage.get("callbacks") or {}).items():
            if spec is None:
                continue
            cb_path = (*path, "callbacks", cb_name)
            if not self.check(spec, cb_path, callback=True, positional=0):
                continue  # it names nothing that can be made: said so
            callback = self.callbacks.make(spec, cb_path)
            if callback is not None:
                callbacks[cb_name] = callback
        experiment.add_stage(
            name, **params, after=stage.get("after"), lints=stage.get("lints") or {},
            loaders=self.loaders(name, loaders, loaders_path), callbacks=callbacks,
            handler=self.handler(stage.get("handler"), (*path, "handler")),
            **{key: self.component(key, stage.get(key), (*path, key)) for key in COMPONENT_KEYS})

    # --- components and loaders ---------------------------------------------------------------
    def component(self, key: str, spec: Any, path: Path) -> Target | None:
        if spec is None:
            return None
        kwargs = {k: v for k, v in spec.items() if k != TARGET_KEY}
        if key == "optimizer":
            options = {k: kwargs.pop(k) for k in OPTIMIZER_OPTIONS if k in kwargs}
            self.check({TARGET_KEY: spec[TARGET_KEY], **kwargs}, path, positional=1)
            return OptimizerFactory(spec[TARGET_KEY], kwargs, options)
        self.check(spec, path, positional=POSITIONAL[key])
        return Target(spec[TARGET_KEY], kwargs)

    def loaders(self, stage: str, spec: Any, path: Path) -> dict[str, Any]:
        if spec is None:
            return {}
        if TARGET_KEY in spec:
            kwargs = {k: v for k, v in spec.items() if k not in (TARGET_KEY, NAMES_KEY)}
            self.check({TARGET_KEY: spec[TARGET_KEY], **kwargs}, path, positional=0)
            names = spec.get(NAMES_KEY) or (DEFAULT_INFER_LOADER_NAMES if is_infer_stage(stage)
                                            else DEFAULT_LOADER_NAMES)
            source = StageLoaders(Target(spec[TARGET_KEY], kwargs), names)
            return {name: NamedLoader(source, name) for name in names}
        built = {}
        for name, loader in spec.items():
            if loader is None:
                continue
            self.check(loader, (*path, name), positional=0)
            built[name] = Target(loader[TARGET_KEY],
                                 {k: v for k, v in loader.items() if k != TARGET_KEY})
        return built

    def handler(self, spec: Any, path: Path) -> Any:
        """The batch handler: a stagegraph one is made now (its declarations matter to the
        compiler); the user's is imported in import mode, else stands for an unread one."""
        if spec is None:
            return None
        self.check(spec, path, positional=0)
        target = str(spec[TARGET_KEY])
        if self.static and not target.startswith("stagegraph."):
            self.problems.warning(
                "SF814", f"the batch handler {target} is not imported by validate and plan, so "
                "what it reads and writes is not known", "check the run with "
                "`stagegraph run --check`", self.document.value_at((*path, TARGET_KEY)))
            return FunctionHandler(_unknown_handler)
        try:
            value = _handler_object(target, {k: v for k, v in spec.items() if k != TARGET_KEY})
        except Exception as err:
            self.problems.error("SF810", f"cannot make the batch handler {target}: "
                                f"{type(err).__name__}: {err}", "name a stagegraph.BatchHandler "
                                "class (or a function returning one) and its arguments",
                                self.document.value_at((*path, TARGET_KEY)))
            return None
        return value

    # --- static checks ------------------------------------------------------------------------
    def check(self, spec: Mapping[str, Any], path: Path, *, callback: bool = False,
              positional: int | None = None) -> bool:
        """SF810 / SF811 for the `_target_` mapping at ``path`` (called with ``positional``
        arguments first), and its nested ones; whether it had none. A built-in callback is
        checked by making it."""
        before = len(self.problems.errors)
        target = str(spec[TARGET_KEY])
        kwargs = [str(k) for k in spec if k != TARGET_KEY]
        if not (callback and is_builtin(target)):
            if "." not in target and ":" not in target:
                self.problems.error("SF810", f"_target_ {target!r} names no module: write "
                                    "pkg.module.Name", "a _target_ is a dotted import path "
                                    "such as torch.optim.Adam", self._at(path, None))
            else:
                for problem in check_target(target, kwargs, search_path=self.search_path,
                                            positional=positional):
                    code = "SF810" if problem.key is None else "SF811"
                    self.problems.error(code, problem.message, problem.hint,
                                        self._at(path, problem.key))
        for key, value in spec.items():
            for inner_path, inner in nested_targets(value, (*path, key)):
                self.check(inner, inner_path, positional=0)
        return len(self.problems.errors) == before

    def _at(self, path: Path, key: str | None) -> Any:
        if key is None:
            return self.document.value_at((*path, TARGET_KEY))
        return self.document.key_at((*path, key))


def nested_targets(value: Any, path: Path) -> list[tuple[Path, Mapping[str, Any]]]:
    if isinstance(value, Mapping) and TARGET_KEY in value:
        return [(path, value)]
    items = value.items() if isinstance(value, Mapping) else (
        enumerate(value) if isinstance(value, list) else ())
    found = []
    for key, item in items:
        found.extend(nested_targets(item, (*path, key)))
    return found


def _handler_object(target: str, kwargs: Mapping[str, Any]) -> Any:
    """The handler a `_target_` names: a handler object (``@stagegraph.handler``) as it is,
    else what calling it with its arguments returns."""
    value = locate(target)
    if isinstance(value, BatchHandler) and not kwargs:
        return value
    return value(**instantiate(kwargs))


def _unknown_handler(runner: Any, batch: Any) -> Any:  # pragma: no cover - never run
    raise RuntimeError("a stand-in for a batch handler that was not imported")
