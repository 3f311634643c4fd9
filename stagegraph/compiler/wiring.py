"""Component wiring: a stage has what its training and its callbacks' ``needs`` call for.

A stage trains when it is not an inference stage and has a ``train*`` loader. Training with the
built-in supervised handler needs an optimizer (a component, or a callback that steps one of its
own) and a loss (a criterion, or something that writes the key the optimizer callback
backpropagates); a custom batch handler may do both itself, so it is not asked for them. A
callback's ``needs`` name what the stage or the run must provide: ``model``, ``criterion``,
``optimizer``, ``scheduler`` (components of the stage, its own or the experiment's) and
``logdir`` (the run's). An inference stage builds no experiment-level optimizer or scheduler,
so there they do not count.
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.exclusive import origin_of
from stagegraph.compiler.keys import namespace, provided_by
from stagegraph.compiler.metric_checks import migration_hint
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, StagePlan
from stagegraph.graph.enums import LoaderKind

#: What a callback may declare in ``needs``.
NEEDS = ("logdir", "model", "criterion", "optimizer", "scheduler")

#: The code reporting a missing component, and how to provide it.
_MISSING = {
    "model": ("SF509", "pass model= to Experiment(...) or to add_stage(...), as a module or a "
                       "factory"),
    "criterion": ("SF513", "pass criterion= to Experiment(...) or to add_stage(...), e.g. "
                           "criterion=torch.nn.CrossEntropyLoss()"),
    "optimizer": ("SF512", "pass optimizer= to Experiment(...) or to add_stage(...), e.g. "
                           "optimizer=lambda model: torch.optim.Adam(model.parameters())"),
    "scheduler": ("SF514", "pass scheduler= to Experiment(...) or to add_stage(...), e.g. "
                           "scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 5)"),
}

#: The loss an optimizer callback backpropagates when the stage has no optimizer callback yet.
DEFAULT_LOSS = "metric.loss"


def check_wiring(stage: StagePlan, plan: ExecutionPlan, diags: Diagnostics
                 ) -> frozenset[tuple[str, str]]:
    """Report SF511-SF514, SF509 and SF510 for ``stage``; return the reads SF513 covers.

    Requires: the stage's callbacks complete (declared, migrated, defaults).
    Guarantees: adds diagnostics only; the returned ``(callback, key)`` pairs are loss keys
    already reported as SF513 (no criterion at all), which the read-never-written check skips so
    that one mistake is reported once.
    """
    _check_trains_something(stage, diags)
    covered: frozenset[tuple[str, str]] = frozenset()
    if trains(stage) and supervised(stage):
        _check_optimizer(stage, diags)
        covered = _check_criterion(stage, diags)
    if "scheduler" in provided(stage) and "optimizer" not in provided(stage):
        diags.error("SF514", f"the stage has a scheduler ({_whose(stage, 'scheduler')}) but no "
                    "optimizer, so the scheduler would have nothing to adjust",
                    _MISSING["optimizer"][1] + ", or remove the scheduler",
                    stage=stage.name, param="scheduler")
    for cb in stage.callbacks:
        _check_needs(stage, cb, plan, diags)
    return covered


def trains(stage: StagePlan) -> bool:
    """Whether the stage trains: not an inference stage, and it has a ``train*`` loader."""
    return not stage.is_infer and any(lp.kind is LoaderKind.train for lp in stage.loaders)


def supervised(stage: StagePlan) -> bool:
    """Whether the batch step is the built-in supervised handler, which computes no loss and
    updates no weight itself: a custom handler may do both, which the compiler cannot see."""
    return stage.handler.type.startswith("SupervisedHandler")


def provided(stage: StagePlan) -> set[str]:
    """The components the runtime builds for ``stage``."""
    found = set(stage.components)
    if stage.is_infer:  # an inference stage builds no experiment-level optimizer or scheduler
        found -= {c for c in ("optimizer", "scheduler")
                  if stage.components.get(c) == "experiment"}
    return found


def optimizer_callbacks(stage: StagePlan) -> list[CallbackPlan]:
    """The callbacks that step an optimizer: of kind ``optimizer`` or claiming ``optimizer:*``."""
    return [cb for cb in stage.callbacks if cb.kind == "optimizer"
            or any(c.startswith("optimizer:") for c in cb.claims)]


def _whose(stage: StagePlan, component: str) -> str:
    return "the stage's own" if stage.components[component] == "stage" else "the experiment's"


def _check_trains_something(stage: StagePlan, diags: Diagnostics) -> None:
    if stage.is_infer or not stage.loaders or trains(stage):
        return
    names = [lp.name for lp in stage.loaders]
    unknown = [lp.name for lp in stage.loaders if lp.kind is LoaderKind.unknown]
    rename = (f"rename the loader it trains on to start with 'train' (e.g. {unknown[0]!r} -> "
              f"'train_{unknown[0]}')" if unknown else "add a 'train' loader")
    diags.error("SF511", f"the stage trains nothing: none of its loaders "
                f"({', '.join(map(repr, names))}) starts with 'train', so no batch runs in "
                "training mode and no optimizer steps",
                f"{rename}; or, if the stage only predicts, name the stage 'infer_{stage.name}' "
                "(and its loaders 'infer...')",
                stage=stage.name, param="loaders")


def _check_optimizer(stage: StagePlan, diags: Diagnostics) -> None:
    if "optimizer" in provided(stage) or optimizer_callbacks(stage):
        return
    diags.error("SF512", f"the stage trains (loader {_train_loader(stage)!r}) but has no "
                "optimizer, so nothing would update the model's weights",
                _MISSING["optimizer"][1], stage=stage.name, param="optimizer")


def _train_loader(stage: StagePlan) -> str:
    return next(lp.name for lp in stage.loaders if lp.kind is LoaderKind.train)


def _check_criterion(stage: StagePlan, diags: Diagnostics) -> frozenset[tuple[str, str]]:
    """SF513 when there is no criterion and nothing writes the loss the optimizer reads."""
    if "criterion" in provided(stage):
        return frozenset()
    sources = [k for cb in stage.callbacks for k in cb.writes] + list(stage.handler.writes)
    written = provided_by(sources)
    optimizers = optimizer_callbacks(stage)
    reads = [(cb.name, key) for cb in optimizers for key in cb.reads
             if namespace(key) == "metric" and not key.endswith(".*")]
    if not optimizers:
        reads = [("", DEFAULT_LOSS)]
    missing = [(name, key) for name, key in reads if not written(key)]
    if not missing:
        return frozenset()
    keys = list(dict.fromkeys(key for _, key in missing))
    readers = list(dict.fromkeys(name for name, _ in missing if name))
    who = (f", which the optimizer callback {readers[0]!r} backpropagates" if len(readers) == 1
           else f", which the optimizer callbacks {', '.join(map(repr, readers))} backpropagate"
           if readers else ", the loss an optimizer callback backpropagates")
    diags.error("SF513", f"the stage trains (loader {_train_loader(stage)!r}) but has no "
                f"criterion: none is given, and nothing writes {', '.join(map(repr, keys))}"
                f"{who}", _MISSING["criterion"][1] + f", or add a callback that writes "
                f"{keys[0]!r}", stage=stage.name, param="criterion")
    return frozenset((name, key) for name, key in missing if name)


def _check_needs(stage: StagePlan, cb: CallbackPlan, plan: ExecutionPlan,
                 diags: Diagnostics) -> None:
    where = {"stage": stage.name, "callback": cb.name}
    have = provided(stage)
    for need in dict.fromkeys(cb.needs):
        if need == "logdir":
            if plan.logdir is None and cb.origin != "migrated":  # once, where it is declared
                _note_logdir(cb, diags, where)
        elif need in _MISSING:
            if need not in have:
                code, hint = _MISSING[need]
                if stage.is_infer and need in ("optimizer", "scheduler"):
                    hint = f"pass {need}= to this stage's add_stage(...)"
                way_out = (f"; or keep it out of this stage: {migration_hint(stage, cb)}"
                           if cb.origin == "migrated" else f", or remove {cb.name!r}")
                diags.error(code, f"{cb.name!r} ({origin_of(cb)}) needs the stage's {need}, "
                            f"and {_lacks(stage, need)}", f"{hint}{way_out}", **where)
        elif cb.origin != "migrated":  # reported once, where it is declared
            diags.error("SF106", f"invalid declaration needs={need!r}: not something a stage or "
                        "run provides." + did_you_mean(need, NEEDS),
                        f"needs are: {', '.join(NEEDS)}", **where)


def _lacks(stage: StagePlan, need: str) -> str:
    if stage.is_infer and need in ("optimizer", "scheduler"):
        return (f"the stage has none of its own (an inference stage does not build the "
                f"experiment's {need})")
    return f"the stage has no {need}"


def _note_logdir(cb: CallbackPlan, diags: Diagnostics, where: dict[str, str]) -> None:
    # Deferred: a plan compiled without a logdir (`validate EXP`) cannot know the run's. The
    # Runner refuses such a plan before building anything, so the note is all validate can say.
    diags.info("SF510", f"{cb.name!r} ({origin_of(cb)}) writes files under the run's logdir, "
               "and this plan has none: the run needs one",
               "give one: `stagegraph run EXP --logdir DIR` (check it with `stagegraph validate "
               "EXP --logdir DIR`), or in Python sg.compile(exp, logdir=...) / "
               "sg.Runner(plan, logdir=...)", **where)
