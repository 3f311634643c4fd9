"""Which plan runs: always a compiled plan without errors, bound to its experiment.

A plan made by `stagegraph.compile` knows its experiment. A plan read from JSON does not: the
experiment must be passed, and compiling it again must give the same hash, or the plan is
refused. A ``logdir`` or ``device`` other than the plan's is applied by compiling again, because
defaults such as checkpointing and CSV logging depend on them.

A plan compiled without a logdir cannot know the run's, so the compiler only notes (``SF510`` at
level ``info``) a callback that needs one; a run without a logdir refuses such a plan here, before
anything is built, unless the experiment lowered ``SF510`` for that callback.
"""

from __future__ import annotations

from typing import Any

from stagegraph.compiler.diagnostics import Diagnostic, Location, Severity
from stagegraph.compiler.levels import setting
from stagegraph.compiler.pipeline import compile as compile_experiment
from stagegraph.compiler.plan import ExecutionPlan
from stagegraph.graph.experiment import Experiment
from stagegraph.runtime.errors import PlanError


def runnable_plan(
    plan: ExecutionPlan,
    *,
    experiment: Experiment | None = None,
    logdir: Any = None,
    device: Any = None,
) -> ExecutionPlan:
    """The plan to run for ``plan`` with these overrides; `PlanError` if it cannot run."""
    if not isinstance(plan, ExecutionPlan):
        raise PlanError(f"Runner expects an ExecutionPlan from stagegraph.compile(...), got "
                        f"{type(plan).__name__}; to run an Experiment use stagegraph.run(exp)")
    own = plan.experiment_object
    if experiment is not None and experiment is not own:
        plan = _matching(plan, experiment)
    elif own is None:
        raise PlanError(f"the plan for experiment {plan.experiment!r} was read from JSON and "
                        "knows no live objects; pass the experiment it was compiled from: "
                        "Runner(plan, experiment=exp)")
    changes: dict[str, Any] = {}
    if logdir is not None and str(logdir) != plan.logdir:
        changes["logdir"] = str(logdir)
    if device is not None and str(device) != plan.device:
        changes["device"] = str(device)  # a torch.device is accepted too
    if changes:
        plan = _recompile(plan, plan.experiment_object, **changes)
    if not plan.ok:
        raise PlanError.from_diagnostics(plan.experiment, plan.errors)
    missing = missing_logdir(plan)
    if missing:
        raise PlanError(f"the plan for experiment {plan.experiment!r} needs a logdir and has "
                        "none, so nothing was built or run:", missing)
    return plan


LOGDIR_HINT = ("give the run a logdir: `stagegraph run EXP --logdir DIR` on the command line, or "
               "logdir=DIR to stagegraph.run(...), Runner(plan, logdir=...) or "
               "stagegraph.compile(...) in Python")


def missing_logdir(plan: ExecutionPlan) -> tuple[Diagnostic, ...]:
    """``SF510`` errors for the callbacks that need a logdir when ``plan`` has none.

    A callback needs one when it declares ``needs=("logdir",)`` or the compiler noted it
    (``SF510`` at level ``info``). One whose ``SF510`` level the experiment set to anything but
    ``error`` (its callback, stage or experiment ``lints``) runs without.
    """
    if plan.logdir is not None:
        return ()
    noted = {(d.location.stage, d.location.callback): d.message for d in plan.diagnostics
             if d.code == "SF510" and d.severity is Severity.info}
    found: dict[tuple[str | None, str | None], str] = {}
    for stage in plan.stages:
        for cb in stage.callbacks:
            place = (stage.name, cb.name)
            if place in noted or "logdir" in cb.needs:
                found[place] = noted.get(place, f"callback {cb.name!r} needs a logdir (it "
                                         "writes files there), and the run has none")
    found.update((place, message) for place, message in noted.items() if place not in found)
    stages = {stage.name: stage for stage in plan.stages}
    return tuple(
        Diagnostic(code="SF510", severity=Severity.error, message=message, hint=LOGDIR_HINT,
                   location=Location(stage=stage, callback=callback))
        for (stage, callback), message in found.items()
        if setting(plan, stages.get(stage or ""), callback, "SF510") in (None, "error"))


def _options(plan: ExecutionPlan) -> dict[str, Any]:
    return {"device": plan.device, "rank": plan.rank, "logdir": plan.logdir,
            "verbose": plan.verbose}


def _matching(plan: ExecutionPlan, experiment: Experiment) -> ExecutionPlan:
    """``experiment`` compiled as ``plan`` was; `PlanError` when the hashes differ."""
    again = compile_experiment(experiment, **_options(plan))
    if again.hash == plan.hash:
        return again
    name = getattr(experiment, "name", "?")
    raise PlanError(f"the plan (hash {plan.hash[:12]}) does not match experiment {name!r}: "
                    "compiling the experiment with the plan's device, rank and logdir gives a "
                    "different plan; the experiment changed since the plan was made, so compile "
                    "it again (stagegraph plan EXP -o plan.json) or pass the matching experiment")


def _recompile(plan: ExecutionPlan, experiment: Experiment, **changes: Any) -> ExecutionPlan:
    return compile_experiment(experiment, **{**_options(plan), **changes})
