"""Optimizers with options: per-layer parameter groups, no weight decay on biases and norms,
linear learning-rate scaling, and starting from the previous stage's optimizer state.

`build_optimizer` builds one optimizer now; `optimizer` (``stagegraph.optimizer``) returns an
`OptimizerFactory` for an experiment or stage, which the runtime calls at stage start with the
model, the batch size of the stage's train loader and the optimizer state the previous stage
left (see docs/optimizers.md)::

    exp = sg.Experiment("x", model=make_model, optimizer=sg.optimizer(
        torch.optim.AdamW, lr=1e-3, weight_decay=0.05,
        layerwise_params={r"encoder\\.": {"lr": 1e-4}}, no_bias_weight_decay=True))

Importing this module does not import torch: it is imported when an optimizer is built.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stagegraph.runtime.optim_state import (
    CarriedOptimizer,
    load_previous_state,
    named_parameters,
)

if TYPE_CHECKING:
    import torch

#: What ``lr_linear_scaling`` holds.
SCALING_KEYS = ("lr", "base_batch_size")


@dataclass(frozen=True)
class StageContext:
    """What the runtime knows when it builds a stage's optimizer.

    ``batch_size``: the batch size of the stage's train loader (``None``: it has none, or it
    cannot be read; ``batch_size_problem`` says why). ``previous``: the state of the optimizer of
    the latest earlier stage that had one. ``resuming``: the stage is being resumed, so its
    optimizer state comes from the resume checkpoint instead.
    """

    stage: str
    batch_size: int | None = None
    batch_size_problem: str = ""
    previous: CarriedOptimizer | None = None
    resuming: bool = False


@dataclass(frozen=True)
class OptimizerFactory:
    """An optimizer to build at stage start: ``target(param_groups, **kwargs)`` plus options.

    Build one with `optimizer`. Called with the model only (``factory(model)``), as any optimizer
    factory, it works unless it needs what only the runtime knows (``lr_linear_scaling``,
    ``load_from_previous_stage``); the runtime calls `for_stage` instead.
    """

    target: str | Any
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    layerwise_params: Mapping[str, Mapping[str, Any]] | None = None
    no_bias_weight_decay: bool = False
    lr_linear_scaling: Mapping[str, Any] | None = None
    load_from_previous_stage: bool = False

    def __post_init__(self) -> None:
        _check_options(self.kwargs, self.layerwise_params, self.lr_linear_scaling)

    def __call__(self, model: Any) -> torch.optim.Optimizer:
        if self.load_from_previous_stage:
            raise ValueError("load_from_previous_stage starts from the optimizer state an "
                             "earlier stage left, which only a run has: let the runner build "
                             "this optimizer (Experiment(optimizer=...) or add_stage(optimizer="
                             "...)), or call for_stage(model, StageContext(...))")
        return self.for_stage(model, StageContext(
            stage="?", batch_size_problem="it was built outside a run (factory(model)), "
            "which has no loader; call build_optimizer(..., batch_size=...) instead"))

    def for_stage(self, model: Any, context: StageContext) -> torch.optim.Optimizer:
        """The optimizer of stage ``context.stage`` for ``model``."""
        batch_size = None
        if self.lr_linear_scaling is not None:
            if context.batch_size is None:
                raise ValueError("lr_linear_scaling scales the learning rate by the batch size "
                                 "of the stage's train loader, and "
                                 f"{context.batch_size_problem or 'there is none'}")
            batch_size = context.batch_size
        optimizer = build_optimizer(
            model, self.target, self.kwargs, layerwise_params=self.layerwise_params,
            no_bias_weight_decay=self.no_bias_weight_decay,
            lr_linear_scaling=self.lr_linear_scaling, batch_size=batch_size)
        if self.load_from_previous_stage and not context.resuming:
            load_previous_state(optimizer, model, context)
        return optimizer

    def __repr__(self) -> str:
        name = self.target if isinstance(self.target, str) else _qualname(self.target)
        options = [f"{k}={v!r}" for k, v in self.kwargs.items()]
        for key in ("layerwise_params", "no_bias_weight_decay", "lr_linear_scaling",
                    "load_from_previous_stage"):
            value = getattr(self, key)
            if value:
                options.append(f"{key}={value!r}")
        return f"optimizer({', '.join([name, *options])})"


def optimizer(target: str | Any, /, *, layerwise_params: Mapping[str, Mapping[str, Any]] |
              None = None, no_bias_weight_decay: bool = False,
              lr_linear_scaling: Mapping[str, Any] | None = None,
              load_from_previous_stage: bool = False, **kwargs: Any) -> OptimizerFactory:
    """An optimizer factory for ``Experiment(optimizer=...)`` or ``add_stage(optimizer=...)``.

    ``target`` is an optimizer class or its dotted path (``"torch.optim.Adam"``); ``kwargs`` go
    to it (``lr=1e-3``). Options (docs/optimizers.md):

    - ``layerwise_params``: ``{pattern: {hyperparameter: value}}``; each parameter joins the group
      of the first pattern (a regular expression matched at the start of the parameter's name,
      ``re.match``) that matches its name; the others form the default group;
    - ``no_bias_weight_decay``: ``weight_decay=0`` for biases and every parameter of one
      dimension or less (norm layers' weights and biases, scalars);
    - ``lr_linear_scaling``: ``{"lr": base_lr, "base_batch_size": n}``: the learning rate is
      ``base_lr * batch_size / n``, ``batch_size`` being the stage's train loader's; pattern
      learning rates are scaled by the same factor;
    - ``load_from_previous_stage``: start from the state of the optimizer of the latest earlier
      stage that had one (same parameter groups required).
    """
    return OptimizerFactory(target, dict(kwargs), layerwise_params, no_bias_weight_decay,
                            lr_linear_scaling, load_from_previous_stage)


def build_optimizer(model: Any, target: str | Any, kwargs: Mapping[str, Any], *,
                    layerwise_params: Mapping[str, Mapping[str, Any]] | None = None,
                    no_bias_weight_decay: bool = False,
                    lr_linear_scaling: Mapping[str, Any] | None = None,
                    batch_size: int | None = None) -> torch.optim.Optimizer:
    """``target(groups, **kwargs)`` for the parameters of ``model``, grouped by the options
    (see `optimizer`); ``batch_size`` is required with ``lr_linear_scaling``::

        build_optimizer(model, "torch.optim.SGD", {"lr": 0.1, "weight_decay": 1e-4},
                        no_bias_weight_decay=True)
    """
    _check_options(kwargs, layerwise_params, lr_linear_scaling)
    cls = resolve_target(target)
    kwargs = dict(kwargs)
    scale = 1.0
    if lr_linear_scaling is not None:
        if batch_size is None:
            raise ValueError("lr_linear_scaling needs batch_size= (the train loader's)")
        scale = batch_size / float(lr_linear_scaling["base_batch_size"])
        kwargs["lr"] = float(lr_linear_scaling["lr"]) * scale
    named = named_parameters(model)
    groups = param_groups(named, layerwise_params=layerwise_params,
                          no_bias_weight_decay=no_bias_weight_decay, lr_scale=scale)
    optimizer = cls([{"params": g.params, **g.options} for g in groups], **kwargs)
    _check_hyperparameters(optimizer, cls, layerwise_params, no_bias_weight_decay)
    return optimizer


@dataclass(frozen=True)
class Group:
    """One parameter group: the pattern that formed it (``None``: the default group)."""

    pattern: str | None
    decay: bool
    names: tuple[str, ...]
    params: list[Any]
    options: dict[str, Any]


def param_groups(named: Sequence[tuple[str, Any]], *,
                 layerwise_params: Mapping[str, Mapping[str, Any]] | None = None,
                 no_bias_weight_decay: bool = False, lr_scale: float = 1.0) -> list[Group]:
    """The parameter groups for ``named`` (``model.named_parameters()``), in this order: each
    pattern's in the order given, then the default group; with ``no_bias_weight_decay`` each is
    split into its decayed parameters and its biases / one-dimensional ones. Empty groups are
    left out; a pattern that takes no parameter is an error.
    """
    patterns = list((layerwise_params or {}).items())
    compiled = [(_compile(p), p) for p, _ in patterns]
    taken: dict[str | None, list[tuple[str, Any]]] = {p: [] for _, p in compiled}
    taken[None] = []
    for name, param in named:
        pattern = next((p for regex, p in compiled if regex.match(name)), None)
        taken[pattern].append((name, param))
    empty = [p for _, p in compiled if not taken[p]]
    if empty:
        raise ValueError(_unmatched(empty, [p for _, p in compiled], named))
    groups = []
    for pattern in [*(p for _, p in compiled), None]:
        options = dict((layerwise_params or {}).get(pattern, {})) if pattern is not None else {}
        if "lr" in options:
            options["lr"] = float(options["lr"]) * lr_scale
        members = taken[pattern]
        halves = ([(True, [m for m in members if not _no_decay(*m)]),
                   (False, [m for m in members if _no_decay(*m)])]
                  if no_bias_weight_decay else [(True, members)])
        for decay, part in halves:
            if part:
                group_options = options if decay else {**options, "weight_decay": 0.0}
                groups.append(Group(pattern, decay, tuple(n for n, _ in part),
                                    [p for _, p in part], group_options))
    return groups


def train_batch_size(loaders: Mapping[str, Any], train: Sequence[str]) -> tuple[int | None, str]:
    """The batch size of the loaders named ``train``, and why there is none when there is none."""
    from stagegraph.runtime.loop import loader_batch_size

    if not train:
        return None, "the stage has no train loader"
    sizes = {name: loader_batch_size(loaders[name]) for name in train}
    unknown = [name for name, size in sizes.items() if not isinstance(size, int)]
    if unknown:
        return None, (f"the batch size of loader {unknown[0]!r} cannot be read (give it a "
                      "DataLoader with batch_size=, or drop lr_linear_scaling)")
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{n!r}: {s}" for n, s in sizes.items())
        return None, f"the train loaders have different batch sizes ({listed})"
    return next(iter(sizes.values())), ""


def resolve_target(target: str | Any) -> Any:
    """The optimizer class ``target`` names (``torch.optim.Adam`` or ``torch.optim:Adam``)."""
    if not isinstance(target, str):
        if not callable(target):
            raise TypeError(f"the optimizer target must be a class or a dotted path, not "
                            f"{target!r}")
        return target
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"optimizer target {target!r} is not a dotted path such as "
                         "'torch.optim.Adam'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {module_name!r} for optimizer {target!r}: {err}"
                         ) from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ValueError(f"module {module_name!r} has no {attr!r} (optimizer {target!r})"
                         ) from err


# --- helpers ----------------------------------------------------------------------------------
def _check_options(kwargs: Mapping[str, Any],
                   layerwise_params: Mapping[str, Mapping[str, Any]] | None,
                   lr_linear_scaling: Mapping[str, Any] | None) -> None:
    if "params" in kwargs:
        raise ValueError("the optimizer's parameters come from the model; drop params=")
    if layerwise_params is not None:
        if not isinstance(layerwise_params, Mapping):
            raise TypeError("layerwise_params must map a name pattern to hyperparameters, "
                            f"such as {{'encoder\\\\.': {{'lr': 1e-4}}}}, not {layerwise_params!r}")
        for pattern, options in layerwise_params.items():
            _compile(pattern)
            if not isinstance(options, Mapping):
                raise TypeError(f"layerwise_params[{pattern!r}] must map hyperparameters to "
                                f"values, such as {{'lr': 1e-4}}, not {options!r}")
            if "params" in options:
                raise ValueError(f"layerwise_params[{pattern!r}]: the pattern picks the "
                                 "parameters; drop 'params'")
    if lr_linear_scaling is not None:
        _check_scaling(kwargs, lr_linear_scaling)


def _check_scaling(kwargs: Mapping[str, Any], scaling: Mapping[str, Any]) -> None:
    if not isinstance(scaling, Mapping) or set(scaling) != set(SCALING_KEYS):
        raise ValueError("lr_linear_scaling must be {'lr': base_lr, 'base_batch_size': n}, not "
                         f"{scaling!r}")
    base = scaling["base_batch_size"]
    if not isinstance(base, int) or isinstance(base, bool) or base < 1:
        raise ValueError(f"lr_linear_scaling: base_batch_size must be an int >= 1, not {base!r}")
    if "lr" in kwargs:
        raise ValueError("give lr or lr_linear_scaling, not both: with lr_linear_scaling the "
                         "learning rate is lr_linear_scaling['lr'] * batch_size / "
                         "base_batch_size")


def _compile(pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise TypeError(f"layerwise_params: a pattern must be a string, not {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"layerwise_params: {pattern!r} is not a regular expression: {err}"
                         ) from err


def _no_decay(name: str, param: Any) -> bool:
    return bool(param.ndim <= 1 or name.endswith("bias"))


def _check_hyperparameters(optimizer: Any, cls: Any,
                           layerwise_params: Mapping[str, Mapping[str, Any]] | None,
                           no_bias_weight_decay: bool) -> None:
    """torch keeps a group's unknown keys silently; a misspelt hyperparameter is an error here."""
    known = set(getattr(optimizer, "defaults", {}))
    has = f"it has {', '.join(sorted(known))}"
    for pattern, options in (layerwise_params or {}).items():
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"layerwise_params[{pattern!r}]: {_qualname(cls)} has no "
                             f"hyperparameter {', '.join(map(repr, unknown))}; {has}")
    if no_bias_weight_decay and "weight_decay" not in known:
        raise ValueError(f"no_bias_weight_decay: {_qualname(cls)} has no weight_decay; {has}")


def _unmatched(empty: Sequence[str], patterns: Sequence[str],
               named: Sequence[tuple[str, Any]]) -> str:
    names = [n for n, _ in named]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    which = ", ".join(repr(p) for p in empty)
    earlier = any(re.compile(p).match(n) for p in empty for n in names)
    why = (" (an earlier pattern takes the parameters it matches: the first matching pattern "
           "wins)" if earlier else "")
    return (f"layerwise_params: pattern(s) {which} match no parameter{why}; patterns are "
            f"regular expressions matched at the start of the parameter names, which are: "
            f"{shown or '(none)'}")


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", "")
    name = getattr(obj, "__qualname__", type(obj).__name__)
    return f"{module}.{name}" if module else name
