"""`compile`: run the passes in order and return the plan with every diagnostic."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from stagegraph.compiler.checks import checks
from stagegraph.compiler.defaults import defaults
from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.dispatch import dispatch
from stagegraph.compiler.levels import lint_levels
from stagegraph.compiler.metrics import metric_flow
from stagegraph.compiler.migration import migration
from stagegraph.compiler.names import names
from stagegraph.compiler.order import callback_order
from stagegraph.compiler.plan import ExecutionPlan, with_hash
from stagegraph.compiler.rank import rank_filter
from stagegraph.compiler.schema import schema
from stagegraph.compiler.stages import stage_graph
from stagegraph.graph.enums import RankKind
from stagegraph.graph.experiment import Experiment

Pass = Callable[[ExecutionPlan, Diagnostics], ExecutionPlan]


def passes(*, verbose: bool = True) -> list[tuple[str, Pass]]:
    """The passes after the schema pass, in the order they run."""
    return [
        ("stage_graph", stage_graph),
        ("migration", migration),
        ("defaults", partial(defaults, verbose=verbose)),
        ("metric_flow", metric_flow),
        ("callback_order", callback_order),
        ("rank_filter", rank_filter),
        ("dispatch", dispatch),
        ("checks", checks),
        ("names", names),
        ("lint_levels", lint_levels),
    ]


def compile(  # the verb users expect: sg.compile(exp), shadowing the builtin on purpose
    experiment: Experiment,
    *,
    device: str | None = None,
    rank: RankKind | str = RankKind.single,
    logdir: str | None = None,
    verbose: bool = True,
) -> ExecutionPlan:
    """Compile ``experiment`` into an `ExecutionPlan`; never raises for a user's mistake.

    ``device`` is recorded for the runtime (``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``;
    by default the experiment's own, ``Experiment(device=...)``);
    ``rank`` picks the callbacks a ``single`` process, a distributed ``master`` or a ``worker``
    runs; ``logdir`` adds checkpoint and CSV defaults; ``verbose=False`` leaves out the console
    logger. Check ``plan.ok`` and ``plan.diagnostics``.
    """
    diags = Diagnostics()
    if not isinstance(experiment, Experiment):
        diags.error("SF100", f"expected a stagegraph.Experiment, got {type(experiment).__name__}",
                    "build one with stagegraph.Experiment('name', model=...) and add_stage(...)")
        return with_hash(ExecutionPlan(experiment="?", seed=0, diagnostics=diags.sorted({}, {})))
    try:
        rank = RankKind(rank)
    except ValueError:
        diags.error("SF108", f"rank {rank!r} is not one of single, master, worker",
                    "pass rank='single' (or 'master' / 'worker' for distributed runs)",
                    param="rank")
        rank = RankKind.single
    if device is None:
        device = experiment.device
    if type(device).__module__ == "torch":  # a torch.device, given without importing torch
        device = str(device)
    with _gc_paused():
        plan = schema(experiment, diags, device=device, rank=rank,
                      logdir=None if logdir is None else str(logdir), verbose=verbose)
        plan._experiment = experiment  # migration compares the live instances it shadows
        for _name, run in passes(verbose=verbose):
            plan = run(plan, diags)
    stage_rank = {s.name: s.index for s in experiment.stages if isinstance(s.name, str)}
    callback_rank = {(s.name, cb.name): i for s in plan.stages
                     for i, cb in enumerate(s.callbacks)}
    plan = plan.model_copy(update={"diagnostics": diags.sorted(stage_rank, callback_rank)})
    plan._experiment = experiment
    return with_hash(plan)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while passes build many small immutable objects.

    Its full collections rescan every live object, which made large compiles superlinear; the
    passes create no reference cycles worth collecting early.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
