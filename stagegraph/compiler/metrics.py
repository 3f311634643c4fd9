"""The metric flow pass (after defaults, before callback order): metric names, level by level.

Requires: each stage's callbacks complete (declared, migrated, defaults).
Guarantees: ``{main_metric}`` and ``{valid_loader}`` in every callback's ``reads``, ``writes`` and
``watch`` are replaced by the stage's values (a migrated callback takes the receiving stage's);
``StagePlan.metrics`` names the metrics the stage produces at each level, derived as the runtime
runs them; the callback of kind ``metric_aggregation`` writes the derived loader and epoch metrics
and the one of kind ``validation`` the derived valid metrics, as concrete keys instead of
wildcards. A level some writer writes as a wildcard (``metric.*``) cannot be known: its derived
writes stay a wildcard and the level is listed in ``MetricFlow.open``.

The pipeline (see ``runtime/callbacks/aggregation.py`` and ``validation.py``)::

    metric.X  --aggregation-->  loader_metric.X  --aggregation-->  epoch_metric.{loader}_X
    epoch_metric.{valid_loader}_X  --validation-->  valid_metric.X

Loader and epoch metrics may also be written directly (a torchmetrics callback writes
``loader_metric.f1``, the optimizer ``epoch_metric.lr``). One pass over each stage's keys: linear.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.keys import namespace
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, MetricFlow, StagePlan

AGGREGATION = "metric_aggregation"
VALIDATION = "validation"

#: Metric namespaces, in pipeline order, and the `MetricFlow` field of each.
LEVELS = {"metric": "batch", "loader_metric": "loader", "epoch_metric": "epoch",
          "valid_metric": "valid"}
#: How messages name a metric of each namespace.
LEVEL_NAMES = {"metric": "batch metric", "loader_metric": "loader metric",
               "epoch_metric": "epoch metric", "valid_metric": "valid metric"}
#: The namespaces a deriving kind writes (its wildcards there are replaced by derived keys).
DERIVES = {AGGREGATION: ("loader_metric", "epoch_metric"), VALIDATION: ("valid_metric",)}


def metric_flow(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    return plan.model_copy(update={"stages": tuple(flow_stage(s) for s in plan.stages)})


def flow_stage(stage: StagePlan) -> StagePlan:
    """One stage: placeholders substituted, metrics derived, the deriving callbacks' writes
    made exact."""
    callbacks = tuple(substituted(cb, stage) for cb in stage.callbacks)
    kinds = {cb.kind for cb in callbacks}
    flow, derived = derive(Written.collect(callbacks, stage), [ld.name for ld in stage.loaders],
                           stage.valid_loader, aggregation=AGGREGATION in kinds,
                           validation=VALIDATION in kinds)
    callbacks = tuple(_with_derived(cb, derived[cb.kind]) if cb.kind in derived else cb
                      for cb in callbacks)
    return stage.model_copy(update={"callbacks": callbacks, "metrics": flow})


# --- placeholders ----------------------------------------------------------------------------
def substitute(key: str, stage: StagePlan) -> str:
    """``key`` with ``{main_metric}`` and ``{valid_loader}`` replaced by ``stage``'s values."""
    if "{" not in key:
        return key
    return key.replace("{main_metric}", stage.main_metric).replace(
        "{valid_loader}", stage.valid_loader)


def substituted(cb: CallbackPlan, stage: StagePlan) -> CallbackPlan:
    """``cb`` with the placeholders of its keys and ``watch`` replaced (itself when it has none)."""
    watch = cb.watch
    if not any("{" in k for k in (*cb.reads, *cb.writes, watch or "")):
        return cb
    return cb.model_copy(update={
        "reads": tuple(substitute(k, stage) for k in cb.reads),
        "writes": tuple(substitute(k, stage) for k in cb.writes),
        "watch": None if watch is None else substitute(watch, stage),
    })


# --- derivation ------------------------------------------------------------------------------
@dataclass
class Written:
    """Metric names written directly, per namespace, and the namespaces written as wildcards."""

    names: dict[str, dict[str, None]] = field(
        default_factory=lambda: {ns: {} for ns in LEVELS})  # ordered sets
    wild: set[str] = field(default_factory=set)

    @classmethod
    def collect(cls, callbacks: Iterable[CallbackPlan], stage: StagePlan) -> Written:
        written = cls()
        written.add(stage.handler.writes, skip=())
        for cb in callbacks:
            written.add(cb.writes, skip=DERIVES.get(cb.kind or "", ()))
        return written

    def add(self, keys: Iterable[str], skip: tuple[str, ...]) -> None:
        for key in keys:
            ns = namespace(key)
            if ns not in LEVELS:
                continue
            name = key[len(ns) + 1:]
            if name == "*":
                if ns not in skip:  # a deriving callback's own wildcard is what gets derived
                    self.wild.add(ns)
            else:
                self.names[ns][name] = None


def derive(written: Written, loaders: list[str], valid_loader: str, *, aggregation: bool,
           validation: bool) -> tuple[MetricFlow, dict[str | None, tuple[str, ...]]]:
    """The metric names of each level, and the keys each deriving kind writes.

    A level whose deriving callback the stage lacks holds only what is written directly.
    """
    names, open_ = written.names, set(written.wild)
    batch = list(names["metric"])
    loader, epoch, valid = {}, {}, {}  # ordered sets: derived names first, then direct ones
    aggregated: list[str] = []
    if aggregation:
        loader = {**dict.fromkeys(batch), **names["loader_metric"]}
        epoch = dict.fromkeys(f"{ld}_{x}" for ld in loaders for x in loader)
        open_ |= {"loader_metric"} if "metric" in open_ else set()
        open_ |= {"epoch_metric"} if "loader_metric" in open_ else set()
        aggregated = [*_keys("loader_metric", batch, open_),
                      *_keys("epoch_metric", epoch, open_)]
    loader.update(names["loader_metric"])
    epoch.update(names["epoch_metric"])
    validated: list[str] = []
    if validation:
        derived = valid_metric_names(epoch, valid_loader, loaders)
        valid = dict.fromkeys(derived)
        open_ |= {"valid_metric"} if "epoch_metric" in open_ else set()
        validated = _keys("valid_metric", derived, open_)
    valid.update(names["valid_metric"])
    flow = MetricFlow(batch=tuple(batch), loader=tuple(loader), epoch=tuple(epoch),
                      valid=tuple(valid), open=tuple(LEVELS[ns] for ns in LEVELS if ns in open_))
    return flow, {AGGREGATION: tuple(aggregated), VALIDATION: tuple(validated)}


def _keys(ns: str, names: Iterable[str], open_: set[str]) -> list[str]:
    """Keys ``ns.name`` for ``names``, or the wildcard ``ns.*`` when the level is open."""
    return [f"{ns}.*"] if ns in open_ else [f"{ns}.{x}" for x in names]


def valid_metric_names(epoch: Iterable[str], valid_loader: str, loaders: Iterable[str]
                       ) -> list[str]:
    """The valid metrics among epoch metric names, as ``valid_metrics_of`` computes them.

    >>> valid_metric_names(["train_loss", "valid_loss", "valid_hard_loss", "lr"], "valid",
    ...                    ["train", "valid", "valid_hard"])
    ['loss']
    """
    prefix = f"{valid_loader}_"
    longer = tuple(f"{ld}_" for ld in loaders if ld != valid_loader and ld.startswith(prefix))
    return [e[len(prefix):] for e in epoch if e.startswith(prefix) and not e.startswith(longer)]


# --- the deriving callbacks' writes ----------------------------------------------------------
def _with_derived(cb: CallbackPlan, keys: tuple[str, ...]) -> CallbackPlan:
    """``cb``'s writes, its wildcards in the namespaces its kind derives replaced by ``keys``."""
    derives = DERIVES[cb.kind or ""]
    kept = [k for k in cb.writes if not (k.endswith(".*") and namespace(k) in derives)]
    writes = tuple(dict.fromkeys([*kept, *keys]))
    return cb if writes == cb.writes else cb.model_copy(update={"writes": writes})
