"""Messages of the checks about metrics: a metric read that the stage does not produce (SF501)
and a ``main_metric`` that is no valid metric (SF503), said in terms of the metric pipeline.

Used by the checks pass (`stagegraph.compiler.checks`); reads ``StagePlan.metrics``, which the
metric flow pass (`stagegraph.compiler.metrics`) fills.
"""

from __future__ import annotations

from collections.abc import Callable

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.metrics import AGGREGATION, LEVEL_NAMES, LEVELS, VALIDATION
from stagegraph.compiler.plan import CallbackPlan, StagePlan


def available(stage: StagePlan, ns: str) -> tuple[str, ...]:
    """The metric names ``stage`` produces in the metric namespace ``ns``."""
    names: tuple[str, ...] = getattr(stage.metrics, LEVELS[ns])
    return names


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(map(repr, names)) if names else "none"


def missing_metric(stage: StagePlan, cb: CallbackPlan, key: str, in_source: bool,
                   note: str = "") -> tuple[str, str]:
    """SF501's message and hint for a metric ``key`` that ``stage`` does not produce.

    ``in_source``: ``cb`` migrated from a stage that does produce it; ``note``: where its code
    reads the key, when only its code does.
    """
    ns, name = key.split(".", 1)
    level = LEVEL_NAMES[ns]
    names = available(stage, ns)
    message = (f"reads {level} {name!r}{note}, which this stage does not produce."
               + did_you_mean(name, names) + f" Its {level}s: {_listed(names)}."
               + _missing_producer(stage, ns))
    if cb.origin == "migrated":
        message += (f" The callback migrated from stage {cb.source_stage!r}"
                    + (", where that metric exists." if in_source else "."))
    if in_source:
        return message, migration_hint(stage, cb)
    return message, f"name one of its {level}s, or add {_producer(stage, ns, name)}"


def migration_hint(stage: StagePlan, cb: CallbackPlan) -> str:
    """How to keep a migrating callback out of ``stage``."""
    return (f"{cb.name!r} is experiment-scoped and migrates into this stage: set "
            f"migrate_from_previous_stage=False on stage {stage.name!r}, or make it "
            "stage-scoped (scope='stage') and declare it in each stage that needs it")


def _producer(stage: StagePlan, ns: str, name: str) -> str:
    if ns == "epoch_metric":
        loaders = ", ".join(repr(ld.name) for ld in stage.loaders) or "none"
        return (f"a callback that writes the batch metric; epoch metrics are named "
                f"'{{loader}}_{{metric}}' for the stage's loaders ({loaders})")
    if ns == "valid_metric":
        return (f"a callback that writes 'metric.{name}' (the valid loader "
                f"{stage.valid_loader!r} turns it into the valid metric {name!r})")
    return f"a callback that writes 'metric.{name}'"


def _missing_producer(stage: StagePlan, ns: str) -> str:
    """Why a whole level is empty: the stage lacks the callback that derives it."""
    kinds = {cb.kind for cb in stage.callbacks}
    if stage.is_infer and ns in ("valid_metric", "loader_metric", "epoch_metric"):
        return " An inference stage aggregates and validates no metrics."
    if ns in ("loader_metric", "epoch_metric") and AGGREGATION not in kinds:
        return f" The stage has no callback of kind {AGGREGATION!r} to aggregate batch metrics."
    if ns == "valid_metric" and VALIDATION not in kinds:
        return f" The stage has no callback of kind {VALIDATION!r} to make valid metrics."
    return ""


def check_main_metric(stage: StagePlan, diags: Diagnostics) -> Callable[[str], bool]:
    """SF503 when ``main_metric`` is no valid metric of a training stage.

    Returns a test for the reads another diagnostic already explains (the main valid metric
    after SF503; every valid metric when the valid loader is missing, SF504, and then SF503 only
    says whether the metric exists at all), so that one mistake gives one error.
    """
    if stage.is_infer or "valid" in stage.metrics.open:
        return lambda key: False
    main, flow = stage.main_metric, stage.metrics
    valid_known = stage.valid_loader in {ld.name for ld in stage.loaders}
    if valid_known:
        pool, level = flow.valid, "valid metric"
    else:  # what the valid loader would validate
        pool, level = tuple(dict.fromkeys((*flow.loader, *flow.valid))), "metric"
    reported = main not in pool
    if reported:
        diags.error("SF503", f"main_metric {main!r} is not a {level} of this stage, so "
                    "validation and checkpoints could not rank epochs."
                    + did_you_mean(main, pool) + f" Its {level}s: {_listed(pool)}."
                    + _missing_producer(stage, "valid_metric"),
                    f"valid metrics are the metrics of valid loader {stage.valid_loader!r}; "
                    f"set main_metric to one of them, or add a callback that writes "
                    f"'metric.{main}' (a criterion or a metric callback)",
                    stage=stage.name, param="main_metric")
    main_key = f"valid_metric.{main}"

    def covered(key: str) -> bool:
        return key.startswith("valid_metric.") if not valid_known else (
            reported and key == main_key)

    return covered
