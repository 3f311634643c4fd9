"""The built-in callbacks. The compiler's defaults name them as
``stagegraph.runtime.callbacks:ClassName``; see docs/callbacks.md for each one.

Importing this package, building a callback and reading its declarations do not import torch
(torch is imported by the methods that run during training), so a config file naming them
validates without torch (tests/runtime/test_callbacks_torch_free.py checks it).
"""

from __future__ import annotations

from stagegraph.runtime.callbacks.aggregation import MetricAggregationCallback
from stagegraph.runtime.callbacks.checkpoint import CheckpointCallback, checkpoint_data
from stagegraph.runtime.callbacks.console import ConsoleLogger
from stagegraph.runtime.callbacks.criterion import CriterionCallback
from stagegraph.runtime.callbacks.csv_logger import CSVLogger
from stagegraph.runtime.callbacks.early_stopping import EarlyStoppingCallback
from stagegraph.runtime.callbacks.freeze import FreezeCallback
from stagegraph.runtime.callbacks.lr_monitor import LRMonitor
from stagegraph.runtime.callbacks.metrics import AccuracyCallback, TorchMetricsCallback, topk_names
from stagegraph.runtime.callbacks.mlflow_logger import MLflowLogger
from stagegraph.runtime.callbacks.model_summary import ModelSummary
from stagegraph.runtime.callbacks.optimizer import OptimizerCallback
from stagegraph.runtime.callbacks.predictions import PredictionWriter
from stagegraph.runtime.callbacks.scheduler import SchedulerCallback
from stagegraph.runtime.callbacks.tensorboard_logger import TensorBoardLogger
from stagegraph.runtime.callbacks.timer import TimerCallback
from stagegraph.runtime.callbacks.validation import ValidationManagerCallback

__all__ = [
    "AccuracyCallback",
    "CSVLogger",
    "CheckpointCallback",
    "ConsoleLogger",
    "CriterionCallback",
    "EarlyStoppingCallback",
    "FreezeCallback",
    "LRMonitor",
    "MLflowLogger",
    "MetricAggregationCallback",
    "ModelSummary",
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
