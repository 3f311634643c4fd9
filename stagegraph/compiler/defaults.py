"""Pass 4, defaults: add the built-in callbacks a stage needs and the user did not give.

Requires: migration done (a migrated callback counts as given).
Guarantees: each default is an explicit entry with origin ``default``, a ``target`` (the runtime
class, ``module:Class``) and ``params``; a default is skipped when the stage already has a callback
of the same ``kind`` or name, so a user's own callback replaces it instead of duplicating it.

The runtime classes declare the same order, node, reads, writes, claims, needs, watch and events;
a test keeps the two in step (the compiler cannot import them: they need torch). Keys may hold the
``{main_metric}`` placeholder, which the metric flow pass substitutes per stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, StagePlan
from stagegraph.graph.enums import CallbackNode, CallbackOrder, CallbackScope

RUNTIME = "stagegraph.runtime.callbacks"


@dataclass(frozen=True)
class Default:
    """A built-in callback the compiler may add: when, and with which declarations."""

    name: str
    cls: str
    order: int
    events: tuple[str, ...]
    applies: Callable[[StagePlan, ExecutionPlan, dict[str, Any]], bool]
    reads: Callable[[dict[str, Any]], tuple[str, ...]] = lambda p: ()
    writes: Callable[[dict[str, Any]], tuple[str, ...]] = lambda p: ()
    params: Callable[[StagePlan], dict[str, Any]] = lambda s: {}
    node: CallbackNode = CallbackNode.all
    claims: Callable[[dict[str, Any]], tuple[str, ...]] = lambda p: ()
    needs: tuple[str, ...] = ()
    watch: str | None = None


def _training(stage: StagePlan) -> bool:
    return not stage.is_infer


def _criterion_params(stage: StagePlan) -> dict[str, Any]:
    out = next((k for k in stage.handler.writes if k.startswith("output.")), "output.logits")
    target = "batch.targets" if "batch.targets" in stage.handler.reads else next(
        (k for k in stage.handler.reads if k.startswith("batch.")), "batch.targets")
    return {"input_key": out.split(".", 1)[1], "target_key": target.split(".", 1)[1],
            "metric_key": "loss"}


DEFAULTS: tuple[Default, ...] = (
    Default(
        name="criterion", cls="CriterionCallback", order=CallbackOrder.Metric,
        events=("on_batch_end",),
        applies=lambda s, p, o: _training(s) and "criterion" in s.components,
        params=_criterion_params,
        reads=lambda p: (f"output.{p['input_key']}", f"batch.{p['target_key']}"),
        writes=lambda p: (f"metric.{p['metric_key']}",),
        claims=lambda p: (f"criterion:{p['metric_key']}",), needs=("criterion",),
    ),
    Default(
        name="metric_aggregation", cls="MetricAggregationCallback",
        order=CallbackOrder.MetricAggregation,
        events=("on_loader_start", "on_batch_end", "on_loader_end"),
        applies=lambda s, p, o: _training(s),
        reads=lambda p: ("metric.*",),
        writes=lambda p: ("loader_metric.*", "epoch_metric.*"),
        claims=lambda p: ("metric_aggregation",),
    ),
    Default(
        name="optimizer", cls="OptimizerCallback", order=CallbackOrder.Optimizer,
        events=("on_loader_start", "on_batch_end", "on_loader_end", "on_epoch_end"),
        applies=lambda s, p, o: _training(s) and "optimizer" in s.components,
        params=lambda s: {"metric_key": "loss", "accumulation_steps": 1},
        reads=lambda p: (f"metric.{p['metric_key']}",),
        writes=lambda p: ("epoch_metric.lr",),
        claims=lambda p: (f"optimizer:{p.get('optimizer_key') or ''}",
                          f"backward:{p['metric_key']}"), needs=("optimizer",),
    ),
    Default(
        name="validation", cls="ValidationManagerCallback", order=CallbackOrder.Validation,
        events=("on_stage_start", "on_epoch_start", "on_epoch_end"),
        applies=lambda s, p, o: _training(s),
        reads=lambda p: ("epoch_metric.*",),
        writes=lambda p: ("valid.metrics", "valid.is_best", "valid.best_metrics"),
        claims=lambda p: ("validation",),
    ),
    Default(
        name="scheduler", cls="SchedulerCallback", order=CallbackOrder.Scheduler,
        events=("on_loader_start", "on_batch_end", "on_epoch_end"),
        applies=lambda s, p, o: _training(s) and "scheduler" in s.components,
        params=lambda s: {"mode": "epoch"},
        reads=lambda p: ("valid_metric.{main_metric}",),
        claims=lambda p: (f"scheduler:{p.get('scheduler_key') or ''}",), needs=("scheduler",),
    ),
    Default(
        name="console", cls="ConsoleLogger", order=CallbackOrder.Logging,
        events=("on_experiment_start", "on_stage_start", "on_loader_start", "on_batch_end",
                "on_loader_end", "on_epoch_end", "on_stage_end", "on_experiment_end",
                "on_exception"),
        applies=lambda s, p, o: bool(o.get("verbose", True)),
        reads=lambda p: ("epoch_metric.*", "valid.*"),
        node=CallbackNode.master,
    ),
    Default(
        name="csv_logger", cls="CSVLogger", order=CallbackOrder.Logging,
        events=("on_stage_start", "on_epoch_end", "on_stage_end", "on_exception"),
        applies=lambda s, p, o: _training(s) and p.logdir is not None,
        reads=lambda p: ("epoch_metric.*",),
        node=CallbackNode.master,
        claims=lambda p: (f"files:{p.get('folder', 'logs')}/",), needs=("logdir",),
    ),
    Default(
        name="checkpoint", cls="CheckpointCallback", order=CallbackOrder.External,
        events=("on_stage_start", "on_epoch_end", "on_stage_end", "on_exception"),
        applies=lambda s, p, o: _training(s) and p.logdir is not None,
        params=lambda s: {"save_n_best": 1, "load_best_on_stage_end": False},
        reads=lambda p: ("valid_metric.{main_metric}", "valid.is_best"),
        node=CallbackNode.master,
        claims=lambda p: (f"files:checkpoints/{p.get('prefix', '')}",), needs=("logdir",),
        watch="{main_metric}",
    ),
)

#: The kind a default fills, by name (built-in classes declare the same ``kind``).
DEFAULT_KINDS = {d.name: d.name for d in DEFAULTS}


def defaults(plan: ExecutionPlan, diags: Diagnostics, *, verbose: bool = True) -> ExecutionPlan:
    options = {"verbose": verbose}
    stages = tuple(_add(stage, plan, options) for stage in plan.stages)
    return plan.model_copy(update={"stages": stages})


def _add(stage: StagePlan, plan: ExecutionPlan, options: dict[str, Any]) -> StagePlan:
    taken = {cb.kind for cb in stage.callbacks} | {cb.name for cb in stage.callbacks}
    added = []
    for default in DEFAULTS:
        if default.name in taken or not default.applies(stage, plan, options):
            continue
        params = default.params(stage)
        added.append(CallbackPlan(
            name=default.name, type=f"{RUNTIME}.{default.cls}", kind=default.name,
            order=int(default.order), node=default.node, scope=CallbackScope.stage,
            origin="default", declared_in=stage.name, reads=default.reads(params),
            writes=default.writes(params), events=default.events,
            target=f"{RUNTIME}:{default.cls}", params=params, claims=default.claims(params),
            needs=default.needs, watch=default.watch,
        ))
    if not added:
        return stage
    return stage.model_copy(update={"callbacks": (*stage.callbacks, *added)})
