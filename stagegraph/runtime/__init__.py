"""The runtime: executes an `ExecutionPlan` with torch. The only layer that imports torch."""

from __future__ import annotations

from pathlib import Path

from stagegraph.compiler.pipeline import compile as compile_experiment
from stagegraph.graph.enums import RankKind
from stagegraph.graph.experiment import Experiment
from stagegraph.runtime.binding import StageBinding, bind
from stagegraph.runtime.device import resolve_device
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
from stagegraph.runtime.runner import CHECK_RUN_BATCHES, CHECK_RUN_EPOCHS, Runner
from stagegraph.runtime.seeding import set_global_seed
from stagegraph.runtime.state import RunnerState


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
