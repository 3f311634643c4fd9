"""The built-in callbacks. The compiler's defaults name them as
``stagegraph.runtime.callbacks:ClassName``; see docs/callbacks.md for each one.

Importing this package, building a callback and reading its declarations do not import torch
(torch is imported by the methods that run during training), so a config file naming them
validates without torch. ``CheckpointCallback`` and ``checkpoint_data`` still import torch, when
first looked up (module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stagegraph.runtime.callbacks.aggregation import MetricAggregationCallback
from stagegraph.runtime.callbacks.console import ConsoleLogger
from stagegraph.runtime.callbacks.criterion import CriterionCallback
from stagegraph.runtime.callbacks.csv_logger import CSVLogger
from stagegraph.runtime.callbacks.early_stopping import EarlyStoppingCallback
from stagegraph.runtime.callbacks.metrics import AccuracyCallback, TorchMetricsCallback, topk_names
from stagegraph.runtime.callbacks.optimizer import OptimizerCallback
from stagegraph.runtime.callbacks.predictions import PredictionWriter
from stagegraph.runtime.callbacks.scheduler import SchedulerCallback
from stagegraph.runtime.callbacks.tensorboard_logger import TensorBoardLogger
from stagegraph.runtime.callbacks.timer import TimerCallback
from stagegraph.runtime.callbacks.validation import ValidationManagerCallback

if TYPE_CHECKING:
    from stagegraph.runtime.callbacks.checkpoint import CheckpointCallback, checkpoint_data

#: Names whose module imports torch when loaded, and that module.
_LAZY = {
    "CheckpointCallback": "stagegraph.runtime.callbacks.checkpoint",
    "checkpoint_data": "stagegraph.runtime.callbacks.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AccuracyCallback",
    "CSVLogger",
    "CheckpointCallback",
    "ConsoleLogger",
    "CriterionCallback",
    "EarlyStoppingCallback",
    "MetricAggregationCallback",
    "OptimizerCallback",
    "PredictionWriter",
    "SchedulerCallback",
    "TensorBoardLogger",
    "TimerCallback",
    "TorchMetricsCallback",
    "ValidationManagerCallback",
    "checkpoint_data",
    "topk_names",
]
