"""A stage's set-up and hand-over, for the runner: its components and loaders built (seeded as
the seed runner did), the batch fast path decided per loader, the model and criterion compiled when
the stage asks, and at its end the optimizer state a later stage starts from kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stagegraph.compiler.compile_options import stage_compile, torch_options
from stagegraph.graph.enums import LoaderKind
from stagegraph.runtime.binding import StageBinding
from stagegraph.runtime.callbacks.files import unwrap
from stagegraph.runtime.compiled import compile_stage
from stagegraph.runtime.fastpath import decide
from stagegraph.runtime.fastpath_report import record
from stagegraph.runtime.optim import StageContext, train_batch_size
from stagegraph.runtime.optim_state import carry
from stagegraph.runtime.precision import make_scaler, precision_step
from stagegraph.runtime.seeding import set_global_seed

if TYPE_CHECKING:
    from stagegraph.runtime.runner import Runner


def build_stage(runner: Runner) -> None:
    """Seed, then build the components and (seeded again) the loaders of the stage."""
    assert runner.stage is not None
    stage_def = runner.experiment.stage(runner.stage.name)
    listed = runner.stage.components
    set_global_seed(runner.plan.seed)
    runner.model, runner.criterion = runner._builder.model_and_criterion(stage_def, listed)
    setup_model(runner)
    set_global_seed(runner.plan.seed)
    runner.loaders = runner._builder.loaders(stage_def)
    # After the loaders (optimizer options may scale the learning rate by their batch size);
    # building an optimizer draws no random numbers, so the seeding is as before.
    runner.optimizer, runner.scheduler = runner._builder.optimizer_and_scheduler(
        stage_def, listed, runner.model, stage_context(runner))
    if runner._distributed is not None:  # DDP model, sharded train loaders
        runner.model, runner.loaders = runner._distributed.prepare_stage(
            runner.model, runner.loaders, runner.stage, runner.plan.seed)
    decided = {lp.name: decide(lp.name, runner.loaders[lp.name], lp.fast_path)
               for lp in runner.stage.loaders}
    runner.fast_path = {name: decision for name, (decision, _) in decided.items()}
    if runner.logdir is not None and runner.is_distributed_master:  # for `stagegraph plan`
        record(runner.logdir, runner.plan, runner.stage.name, runner.fast_path,
               keep=runner.resumed_from is not None or runner.stage.index > 0)
    runner._loader_items = tuple(
        (lp.name, lp.kind, runner.loaders[lp.name], decided[lp.name][1])
        for lp in runner.stage.loaders)
    runner.scaler = make_scaler(runner.precision, runner.device)
    compile_stage_of(runner, stage_def)
    handler = runner._builder.handler(stage_def)
    runner._step = precision_step(handler, runner.precision, runner.device)


def setup_model(runner: Runner) -> None:
    """Let callbacks change the built model before the optimizer sees it: a callback with a
    ``setup_model(runner)`` method (`FreezeCallback` freezes there) is called, in plan order."""
    for callback in (runner.callbacks or {}).values():
        hook = getattr(callback, "setup_model", None)
        if callable(hook):
            hook(runner)


def compile_stage_of(runner: Runner, stage_def: Any) -> None:
    """``compile=``: the model (in place) and the criterion, once for the whole stage."""
    assert runner.stage is not None
    if runner.stage.compile is None:
        return
    kinds = {lp.kind is LoaderKind.train for lp in runner.stage.loaders}
    runner.compiled, runner.criterion = compile_stage(
        runner.stage.name, torch_options(stage_compile(runner.experiment, stage_def)),
        runner.model, runner.criterion, modes=len(kinds))


def release_compiled(runner: Runner, report: bool) -> None:
    """Give the stage's modules their plain call back; ``report``: warn about recompilations."""
    if runner.compiled is not None:
        runner.compilations[runner.compiled.stage] = runner.compiled.release(report=report)
        runner.compiled = None


def stage_context(runner: Runner) -> StageContext:
    """What an optimizer factory may ask of the stage (its train batch size, the kept state)."""
    assert runner.stage is not None
    train = [lp.name for lp in runner.stage.loaders if lp.kind is LoaderKind.train]
    size, problem = train_batch_size(runner.loaders, train)
    return StageContext(stage=runner.stage.name, batch_size=size, batch_size_problem=problem,
                        previous=runner.kept_optimizer, resuming=runner._resume.restores_stage)


def keep_optimizer(runner: Runner, binding: StageBinding) -> None:
    """Keep this stage's optimizer state if a later stage starts from it, else let it go."""
    if runner.optimizer is not None:
        runner.kept_optimizer = carry(binding.plan.name, runner.optimizer, unwrap(runner.model))
    later = runner._bindings[runner._bindings.index(binding) + 1:]
    user = next((b for b in later if "optimizer" in b.plan.components), None)
    if user is None or not runner._builder.wants_previous_optimizer(
            runner.experiment.stage(user.plan.name)):
        runner.kept_optimizer = None
