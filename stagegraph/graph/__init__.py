"""The authoring model: experiments, stages, callbacks and their declarations. No torch here."""

from stagegraph.graph.callback import Callback, overridden_events
from stagegraph.graph.enums import (
    EVENT_METHODS,
    CallbackNode,
    CallbackOrder,
    CallbackScope,
    Event,
    LoaderKind,
    RankKind,
)
from stagegraph.graph.experiment import STAGE_DEFAULTS, Experiment, StageDef
from stagegraph.graph.handler import BatchHandler, FunctionHandler, SupervisedHandler, handler

__all__ = [
    "EVENT_METHODS",
    "STAGE_DEFAULTS",
    "BatchHandler",
    "Callback",
    "CallbackNode",
    "CallbackOrder",
    "CallbackScope",
    "Event",
    "Experiment",
    "FunctionHandler",
    "LoaderKind",
    "RankKind",
    "StageDef",
    "SupervisedHandler",
    "handler",
    "overridden_events",
]
