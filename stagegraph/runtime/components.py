"""Components: build a stage's model, criterion, optimizer, scheduler, loaders and batch handler.

The compiler never calls a factory; this module does, at stage start. A value is used as it is
when it is an object (an `nn.Module`, an optimizer, a loader), and called when it is a factory:
the model and loader factories take no argument, an optimizer factory may take the model and a
scheduler factory the optimizer (``FACTORY_ARITY`` in the compiler's schema); an optimizer
class or ``functools.partial`` of one gets the model's parameters. A criterion object that is not
an `nn.Module` but a callable of the predictions (it cannot be called without arguments) is used
as it is.

The experiment-level model is built once and kept, so its weights carry over from stage to
stage; a stage's own ``model=`` replaces it for that stage only. Only the components the stage's
plan lists are built: the compiler leaves the experiment-level optimizer and scheduler out of an
inference stage, which steps nothing (a stage's own ``optimizer=`` / ``scheduler=`` there is
built, since the user asked for it by name).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import nn

from stagegraph.compiler.schema import FACTORY_ARITY
from stagegraph.graph.experiment import Experiment, StageDef
from stagegraph.graph.handler import BatchHandler, as_handler
from stagegraph.runtime.errors import BindingError
from stagegraph.runtime.optim import OptimizerFactory, StageContext

_NOT_BUILT: Any = object()


class ComponentBuilder:
    """Builds each stage's components; keeps the experiment-level model across stages."""

    def __init__(self, experiment: Experiment, device: torch.device) -> None:
        self.experiment = experiment
        self.device = device
        self._shared_model: Any = _NOT_BUILT

    def model_and_criterion(self, stage: StageDef, listed: Collection[str]) -> tuple[Any, Any]:
        """Model (on the device) and criterion.

        ``listed``: the components the stage's plan has (``StagePlan.components``); any other
        is ``None``, unbuilt (here and in `optimizer_and_scheduler`).
        """
        model = self._model(stage) if "model" in listed else None
        criterion = self._build(stage, "criterion") if "criterion" in listed else None
        if isinstance(criterion, nn.Module):
            criterion = criterion.to(self.device)
        return model, criterion

    def optimizer_and_scheduler(self, stage: StageDef, listed: Collection[str], model: Any,
                                context: StageContext) -> tuple[Any, Any]:
        """Optimizer (given the model; an `OptimizerFactory` also ``context``) and scheduler."""
        optimizer = None
        if "optimizer" in listed:
            value = self.experiment.component(stage, "optimizer")
            optimizer = (self._options_optimizer(value, model, context)
                         if _stage_aware(value) else self._build(stage, "optimizer", model))
        scheduler = self._build(stage, "scheduler", optimizer) if "scheduler" in listed else None
        return optimizer, scheduler

    def wants_previous_optimizer(self, stage: StageDef) -> bool:
        """Whether ``stage`` starts its optimizer from an earlier stage's state."""
        value = self.experiment.component(stage, "optimizer")
        return _stage_aware(value) and bool(getattr(value, "load_from_previous_stage", False))

    def loaders(self, stage: StageDef) -> dict[str, Any]:
        """The stage's loaders in declared order, factories called."""
        built = {}
        for name, value in stage.loaders.items():
            built[name] = _call(value, (), f"stage {stage.name!r} > loader {name!r}")
        return built

    def handler(self, stage: StageDef) -> BatchHandler:
        handler = as_handler(self.experiment.stage_handler(stage))
        if handler is None:  # the compiler reports this; a plan with errors never runs
            raise BindingError(f"stage {stage.name!r}: the batch handler is not callable")
        return handler

    def shared_model(self, build: bool = False) -> Any:
        """The experiment-level model, or ``None`` when it is not built yet (``build``: build it).

        Resuming needs it when the resumed stage trains a model of its own.
        """
        if self._shared_model is _NOT_BUILT:
            value = self.experiment.components.get("model")
            if not build or value is None:
                return None
            built = _call(value, (), "experiment > model") if _is_factory(value, "model") else value
            self._shared_model = self._place(built)
        return self._shared_model

    def _model(self, stage: StageDef) -> Any:
        if stage.components.get("model") is not None:
            return self._place(self._build(stage, "model"))
        if self.experiment.components.get("model") is None:
            return None
        if self._shared_model is _NOT_BUILT:
            self._shared_model = self._build(stage, "model")
        self._shared_model = self._place(self._shared_model)
        return self._shared_model

    def _options_optimizer(self, factory: Any, model: Any, context: StageContext) -> Any:
        try:
            return factory.for_stage(model, context)
        except (ValueError, TypeError) as err:  # the options' own messages say what to fix
            raise BindingError(f"stage {context.stage!r} > optimizer: {err}") from err
        except Exception as err:
            raise BindingError(f"stage {context.stage!r} > optimizer: building {factory!r} "
                               f"failed: {type(err).__name__}: {err}") from err

    def _place(self, model: Any) -> Any:
        if isinstance(model, nn.Module):
            return model.to(self.device)
        if isinstance(model, Mapping):  # several models: {"generator": ..., "discriminator": ...}
            return {k: self._place(v) for k, v in model.items()}
        return model

    def _build(self, stage: StageDef, name: str, *argument: Any) -> Any:
        value = self.experiment.component(stage, name)
        if value is None or not _is_factory(value, name):
            return value
        arities = sorted(FACTORY_ARITY[name], reverse=True)
        takes = next((n for n in arities if _accepts(value, n)), 0)
        if name == "optimizer" and takes and argument[0] is not None and _is_optimizer_class(value):
            argument = (argument[0].parameters(),)  # partial(torch.optim.SGD, lr=0.1): params
        return _call(value, argument[:takes], f"stage {stage.name!r} > {name}")


def _stage_aware(value: Any) -> bool:
    """An optimizer factory that takes the stage's context (`OptimizerFactory` and its twin in
    config files, which cannot import the runtime)."""
    return isinstance(value, OptimizerFactory) or (
        not isinstance(value, type) and callable(getattr(value, "for_stage", None)))


def _is_factory(value: Any, name: str) -> bool:
    if isinstance(value, (nn.Module, torch.optim.Optimizer)) or not callable(value):
        return False
    # A callable criterion object (predictions, targets) -> loss is the criterion itself.
    return name != "criterion" or _accepts(value, 0)


def _is_optimizer_class(value: Any) -> bool:
    target = value.func if isinstance(value, functools.partial) else value
    return isinstance(target, type) and issubclass(target, torch.optim.Optimizer)


def _accepts(value: Any, n: int) -> bool:
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # a builtin without a signature: assume it fits
        return True
    try:
        signature.bind(*range(n))
    except TypeError:
        return False
    return True


def _call(value: Any, args: tuple[Any, ...], where: str) -> Any:
    if not callable(value):
        return value
    try:
        return value(*args)
    except Exception as err:
        label = getattr(value, "__name__", type(value).__name__)
        raise BindingError(f"{where}: the factory {label} failed: "
                           f"{type(err).__name__}: {err}") from err
