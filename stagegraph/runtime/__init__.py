"""The runtime: executes an `ExecutionPlan` with torch. The only layer that imports torch.

Importing this package (or `stagegraph.runtime.callbacks`) does not import torch: the errors and
the binding are plain Python, and ``Runner``, ``RunnerState``, ``resolve_device``,
``set_global_seed`` and the check-run constants load on first use (module ``__getattr__``), so a
config file naming the built-in callbacks validates without torch's start-up.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stagegraph.compiler.pipeline import compile as compile_experiment
from stagegraph.graph.enums import RankKind
from stagegraph.graph.experiment import Experiment
from stagegraph.runtime.binding import StageBinding, bind
from stagegraph.runtime.errors import (
    BatchError,
    BindingError,
    DeviceError,
    DistributedError,
    LogdirError,
    NonFiniteLossError,
    PlanError,
    ResumeError,
    ResumeWarning,
    RunError,
    StagegraphRuntimeError,
    StagegraphWarning,
)

if TYPE_CHECKING:
    from stagegraph.runtime.device import resolve_device
    from stagegraph.runtime.runner import CHECK_RUN_BATCHES, CHECK_RUN_EPOCHS, Runner
    from stagegraph.runtime.seeding import set_global_seed
    from stagegraph.runtime.state import RunnerState

#: Names that import torch, and the module each comes from.
_LAZY = {
    "CHECK_RUN_BATCHES": "stagegraph.runtime.runner",
    "CHECK_RUN_EPOCHS": "stagegraph.runtime.runner",
    "Runner": "stagegraph.runtime.runner",
    "RunnerState": "stagegraph.runtime.state",
    "resolve_device": "stagegraph.runtime.device",
    "set_global_seed": "stagegraph.runtime.seeding",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(
    experiment: Experiment,
    *,
    device: str | None = None,
    logdir: str | Path | None = None,
    check: bool = False,
    verbose: bool = True,
    rank: RankKind | str = RankKind.single,
    resume: bool | str | Path = False,
    allow_plan_change: bool = False,
    overwrite: bool = False,
) -> Runner:
    """Compile ``experiment``, run it and return the runner.

    ``device`` defaults to the experiment's own (``Experiment(device=...)``, itself ``auto`` by
    default). Raises `PlanError` when the plan has errors, before anything runs. ``resume``,
    ``allow_plan_change`` and ``overwrite`` are the runner's (docs/checkpoints.md).
    """
    from stagegraph.runtime.runner import Runner

    plan = compile_experiment(
        experiment,
        device=device,
        rank=rank,
        logdir=None if logdir is None else str(logdir),
        verbose=verbose,
    )
    return Runner(plan, check=check, resume=resume, allow_plan_change=allow_plan_change,
                  overwrite=overwrite).run()


__all__ = [
    "CHECK_RUN_BATCHES",
    "CHECK_RUN_EPOCHS",
    "BatchError",
    "BindingError",
    "DeviceError",
    "DistributedError",
    "LogdirError",
    "NonFiniteLossError",
    "PlanError",
    "ResumeError",
    "ResumeWarning",
    "RunError",
    "Runner",
    "RunnerState",
    "StageBinding",
    "StagegraphRuntimeError",
    "StagegraphWarning",
    "bind",
    "resolve_device",
    "run",
    "set_global_seed",
]
