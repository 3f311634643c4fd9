"""Binding: turn each stage's callback plan into live instances and per-event method tables.

The plan names callbacks; this module finds them — a ``declared`` or ``migrated`` callback is
the instance in the experiment's stage that declared it (so a migrated one is the very same
object and its state carries over), a ``default`` one is built fresh from ``target`` and
``params`` — and precomputes, per event, the tuple of bound methods the runner calls. Nothing is
sorted or filtered here: the dispatch tables come from the compiler as they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, StagePlan
from stagegraph.graph.enums import EVENT_METHODS
from stagegraph.graph.experiment import Experiment
from stagegraph.runtime.errors import BindingError

Hook = Callable[[Any], None]


@dataclass(frozen=True)
class StageBinding:
    """One stage's live callbacks (plan order) and, per event, the methods to call in order."""

    plan: StagePlan
    callbacks: dict[str, Any]
    events: dict[str, tuple[Hook, ...]]
    names: dict[int, str]

    def table(self, event: str) -> tuple[Hook, ...]:
        """The methods handling ``event``, in plan order (empty when nobody handles it)."""
        return self.events.get(event, ())

    def name_of(self, hook: Hook) -> str:
        """The name of the callback a method of ``table`` belongs to."""
        return self.names.get(id(hook), "?")


def bind(plan: ExecutionPlan, experiment: Experiment) -> tuple[StageBinding, ...]:
    """Every stage of ``plan`` bound to the objects of ``experiment``."""
    return tuple(bind_stage(stage, experiment) for stage in plan.stages)


def bind_stage(stage: StagePlan, experiment: Experiment) -> StageBinding:
    callbacks = {cb.name: _instance(cb, stage, experiment) for cb in stage.callbacks}
    events: dict[str, tuple[Hook, ...]] = {}
    names: dict[int, str] = {}
    for event in EVENT_METHODS:
        hooks = []
        for name in stage.dispatch.get(event, ()):
            hook = getattr(callbacks[name], event)
            names[id(hook)] = name
            hooks.append(hook)
        if hooks:
            events[event] = tuple(hooks)
    return StageBinding(plan=stage, callbacks=callbacks, events=events, names=names)


def _instance(cb: CallbackPlan, stage: StagePlan, experiment: Experiment) -> Any:
    if cb.origin == "default":
        return _build_default(cb, stage)
    try:
        return experiment.stage(cb.declared_in).callbacks[cb.name]
    except (KeyError, TypeError) as err:
        raise BindingError(
            f"stage {stage.name!r}: the plan names callback {cb.name!r} declared in stage "
            f"{cb.declared_in!r}, but the experiment has no such callback; the plan does not "
            "match this experiment (compile it again)") from err


def _build_default(cb: CallbackPlan, stage: StagePlan) -> Any:
    cls = import_target(cb.target or "", f"stage {stage.name!r} > callback {cb.name!r}")
    try:
        return cls(**cb.params)
    except Exception as err:
        raise BindingError(f"stage {stage.name!r} > callback {cb.name!r}: building "
                           f"{cb.target}(**{cb.params!r}) failed: {err}") from err


def import_target(target: str, where: str) -> Any:
    """The object ``module:attr`` names; `BindingError` saying ``where`` if it is not there."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise BindingError(f"{where}: target {target!r} is not of the form 'module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise BindingError(f"{where}: cannot import {module_name!r} for {target!r}: {err}"
                           ) from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise BindingError(f"{where}: module {module_name!r} has no {attr!r} "
                           f"(target {target!r})") from err
