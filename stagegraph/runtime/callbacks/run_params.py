"""What the experiment trackers share: metric names as charts group them, the learning rate of
every param group, and the experiment's parameters flattened to ``key -> scalar``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

Scalar = int | float | str | bool

#: Callback attributes that say how a callback is planned, not what it does.
_DECLARATIONS = frozenset({"order", "node", "scope", "after", "before", "reads", "writes",
                           "claims", "needs", "watch", "watch_minimize", "lints", "kind"})
#: The stage parameters of the plan a tracker records (the rest is planning detail).
STAGE_PARAMS = ("num_epochs", "main_metric", "minimize_metric", "valid_loader", "precision",
                "check_run", "fast_path")
#: The longest value kept: MLflow refuses longer parameter values (6000 characters).
MAX_VALUE = 500


def split_metric(key: str, loaders: Iterable[str] = ()) -> tuple[str | None, str]:
    """An epoch metric key as ``(loader, metric)``: ``valid_accuracy01`` is
    ``("valid", "accuracy01")``; a key without a loader prefix (``lr``) is ``(None, key)``.

    >>> split_metric("train__timer/batch_time", ["train", "valid"])
    ('train', '_timer/batch_time')
    """
    for loader in sorted(loaders, key=len, reverse=True):  # "valid_2" before "valid"
        if key.startswith(f"{loader}_"):
            return loader, key[len(loader) + 1:]
    return None, key


def metric_tag(key: str, loaders: Iterable[str] = ()) -> str:
    """The name a tracker charts an epoch metric under, ``{metric}/{loader}``: ``loss/train``
    and ``loss/valid`` share the chart ``loss``; ``lr`` stays ``lr``."""
    loader, metric = split_metric(key, loaders)
    return metric if loader is None else f"{metric}/{loader}"


def as_float(value: Any) -> float:
    """A metric as a float (a tensor detached first, so it reads without a warning)."""
    return float(value.detach() if hasattr(value, "detach") else value)


def group_values(optimizer: Any, prefix: str = "") -> dict[str, float]:
    """``{"lr/group0": 0.1, "momentum/group0": 0.9, ...}`` for every param group of ``optimizer``.

    ``momentum`` where a group has one (SGD, RMSprop), ``beta1`` / ``beta2`` where it has betas
    (Adam and its kin). ``prefix`` goes before the group (``"head/"``: ``lr/head/group0``).
    """
    values: dict[str, float] = {}
    for index, group in enumerate(optimizer.param_groups):
        where = f"{prefix}group{index}"
        values[f"lr/{where}"] = float(group["lr"])
        if "momentum" in group:
            values[f"momentum/{where}"] = float(group["momentum"])
        betas = group.get("betas")
        if isinstance(betas, (tuple, list)) and len(betas) == 2:
            values[f"beta1/{where}"], values[f"beta2/{where}"] = map(float, betas)
    return values


def learning_rates(optimizer: Any) -> dict[str, float]:
    """``lr/group{i}`` for every param group of ``optimizer`` (none without one)."""
    if getattr(optimizer, "param_groups", None) is None:
        return {}
    return {k: v for k, v in group_values(optimizer).items() if k.startswith("lr/")}


def epoch_scalars(epoch_metrics: dict[str, Any], loaders: Iterable[str],
                  rates: dict[str, float]) -> dict[str, float]:
    """What a tracker writes at an epoch's end: every epoch metric under its `metric_tag`, then
    the learning ``rates`` an epoch metric does not already name (an `LRMonitor`'s come first)."""
    scalars = {metric_tag(key, loaders): as_float(value) for key, value in epoch_metrics.items()}
    for tag, value in rates.items():
        scalars.setdefault(tag, value)
    return scalars


def stage_loaders(runner: Any) -> tuple[str, ...]:
    """The names of the current stage's loaders."""
    stage = getattr(runner, "stage", None)
    if stage is not None and getattr(stage, "loaders", None):
        return tuple(loader.name for loader in stage.loaders)
    return tuple(runner.loaders or ())


def experiment_params(plan: Any, experiment: Any = None) -> dict[str, Scalar]:
    """The experiment as flat parameters: ``seed``, then per stage its plan parameters
    (``train.num_epochs``), components and their arguments (``train.optimizer``,
    ``train.optimizer.lr``) and callbacks with theirs (``train.callbacks.early_stopping``,
    ``train.callbacks.early_stopping.patience``). Components and the arguments of declared
    callbacks come from ``experiment`` (the live objects; ``None`` leaves them out)."""
    params: dict[str, Any] = {"experiment": plan.experiment, "seed": plan.seed,
                              "device": plan.device, "plan_hash": plan.hash[:12]}
    for stage in plan.stages:
        for name in STAGE_PARAMS:
            params[f"{stage.name}.{name}"] = getattr(stage, name)
        params[f"{stage.name}.loaders"] = ",".join(loader.name for loader in stage.loaders)
        params.update(_components(stage, experiment))
        params.update(_callbacks(stage, experiment))
    return {key: _scalar(value) for key, value in params.items()}


def _components(stage: Any, experiment: Any) -> Iterator[tuple[str, Any]]:
    definition = _stage_definition(experiment, stage.name)
    if definition is None:
        return
    for name in stage.components:
        value = experiment.component(definition, name)
        if value is None:
            continue
        described, arguments = describe(value)
        yield f"{stage.name}.{name}", described
        yield from _flat(f"{stage.name}.{name}", arguments)


def _callbacks(stage: Any, experiment: Any) -> Iterator[tuple[str, Any]]:
    definition = _stage_definition(experiment, stage.name)
    live = dict(getattr(definition, "callbacks", None) or {})
    for cb in stage.callbacks:
        if cb.origin == "migrated":  # recorded in the stage that declares it
            continue
        prefix = f"{stage.name}.callbacks.{cb.name}"
        yield prefix, cb.type.rsplit(".", 1)[-1]
        arguments = dict(cb.params)
        instance = live.get(cb.name)
        if instance is not None and cb.origin == "declared":
            arguments.update(_public(instance))
        yield from _flat(prefix, arguments)


def _stage_definition(experiment: Any, name: str) -> Any:
    if experiment is None or not hasattr(experiment, "stage"):
        return None
    try:
        return experiment.stage(name)
    except KeyError:
        return None


def describe(value: Any) -> tuple[str, dict[str, Any]]:
    """A component as ``(name, arguments)``: a config ``_target_`` or `stagegraph.optimizer`
    gives its target and keyword arguments, a ``functools.partial`` its function and keywords,
    a function or class its name, an object its class name."""
    target = getattr(value, "path", None) or getattr(value, "target", None)
    kwargs = getattr(value, "kwargs", None)
    if target is not None and isinstance(kwargs, Mapping):
        return (target if isinstance(target, str) else _qualname(target)), dict(kwargs)
    if isinstance(value, functools.partial):
        return _qualname(value.func), dict(value.keywords)
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return _qualname(value), {}
    return _qualname(type(value)), {}


def _qualname(value: Any) -> str:
    module = getattr(value, "__module__", None)
    name = getattr(value, "__qualname__", None) or repr(value)
    return f"{module}.{name}" if module and module != "builtins" else str(name)


def _public(instance: Any) -> dict[str, Any]:
    """A callback's arguments, as far as it keeps them: the attributes named like a parameter
    of its constructor that hold plain values (``None``, the usual "not given", left out)."""
    try:
        names = set(inspect.signature(type(instance).__init__).parameters) - _DECLARATIONS
    except (TypeError, ValueError):
        return {}
    return {key: value for key, value in vars(instance).items()
            if key in names and value is not None and _plain(value)}


def _plain(value: Any) -> bool:
    if isinstance(value, Mapping):
        return len(value) <= 20 and all(_plain(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return len(value) <= 20 and all(_plain(item) for item in value)
    return value is None or isinstance(value, (int, float, str, bool))


def _flat(prefix: str, arguments: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in arguments.items():
        if isinstance(value, Mapping):
            yield from _flat(f"{prefix}.{key}", value)
        else:
            yield f"{prefix}.{key}", value


def _scalar(value: Any) -> Scalar:
    """A value as a tracker stores it: numbers and text as they are, anything else as text."""
    if isinstance(value, (bool, int, float)):
        return value
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum
        value = value.value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."
