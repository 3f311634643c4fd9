"""Importing the built-in callbacks, building them and reading their declarations loads no torch.

A config file that names only built-in callbacks must validate without torch's start-up, so each
check runs in a fresh interpreter and asserts ``torch`` is absent from ``sys.modules`` after it.
"""

from __future__ import annotations

import subprocess
import sys

BUILD_ALL = """
import sys
import stagegraph.callbacks
import stagegraph.runtime
import stagegraph.runtime.callbacks as cb
from stagegraph.graph.callback import _DECLARATIONS

built = [
    cb.AccuracyCallback(topk=(1, 3), metric_key="acc"),
    cb.CSVLogger(folder="csv"),
    cb.ConsoleLogger(metrics=("loss", "accuracy"), log_interval=5.0),
    cb.CriterionCallback(input_key="logits", target_key="targets", metric_key="loss"),
    cb.EarlyStoppingCallback(patience=2, min_delta=0.01, metric="accuracy", minimize=False),
    cb.FreezeCallback(["backbone", "features.*"], unfreeze_at_epoch=2, unfreeze_lr=1e-3),
    cb.LRMonitor(groups=2, log_batch=True),
    cb.ModelSummary(),
    cb.MetricAggregationCallback(),
    cb.OptimizerCallback(accumulation_steps=2, grad_clip_norm=1.0, nonfinite="skip"),
    cb.PredictionWriter(keys=["logits"], input_keys=["id"], format="csv", argmax=True),
    cb.SchedulerCallback(mode="batch"),
    cb.TimerCallback(),
    cb.ValidationManagerCallback(),
]
if {tensorboard!r}:
    built.append(cb.TensorBoardLogger(log_batch_every=10))
if {mlflow!r}:
    built.append(cb.MLflowLogger(tracking_uri="sqlite:///x.db", tags={{"team": "a"}}))
for callback in built:
    repr(callback)
    [getattr(callback, name) for name in (*_DECLARATIONS, "kind")]
cb.topk_names("accuracy", (1, 5))
assert "torch" not in sys.modules, "torch was imported"
"""

CHECKPOINT = """
import sys
import stagegraph.runtime.callbacks as cb
callback = cb.CheckpointCallback(save_n_best=2, prefix="best")
callback.claims, callback.needs, callback.order
assert "torch" not in sys.modules, "torch was imported"
"""


def _run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _has(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def test_building_the_builtin_callbacks_imports_no_torch() -> None:
    _run(BUILD_ALL.format(tensorboard=_has("tensorboard"), mlflow=_has("mlflow")))


def test_the_runtime_package_loads_torch_only_for_runner_names() -> None:
    _run("import sys, stagegraph.runtime as rt\n"
         "rt.PlanError, rt.RunError, rt.bind\n"
         "assert 'torch' not in sys.modules\n"
         "rt.Runner\n"
         "assert 'torch' in sys.modules\n")


def test_building_a_checkpoint_callback_imports_no_torch() -> None:
    _run(CHECKPOINT)
