"""Exclusive claims: a resource only one callback of a stage may hold (SF515).

A callback's ``claims`` name what it holds alone in a stage: ``optimizer:<key>`` (it steps that
optimizer), ``backward:<metric>`` (it back-propagates that loss), ``criterion:<metric>`` (it
writes that loss), ``scheduler:<key>``, ``early_stopping``,
``validation``, ``files:<path prefix>`` (the files it writes under the logdir). A claim is an
opaque string: two callbacks of one stage with the same string would both act on one thing —
step one optimizer twice, overwrite one loss, delete each other's checkpoint files — so it is an
error. Different strings (two optimizers by key, two file prefixes) never conflict.
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import CallbackPlan, StagePlan


def check_exclusive(stage: StagePlan, diags: Diagnostics) -> None:
    """Report SF515 for every callback claiming what an earlier one of ``stage`` claims.

    Requires: the stage's callbacks in plan order (declared, migrated, defaults).
    Guarantees: one error per later holder of a claim, located at that holder, naming the first
    holder, both origins and how to keep one; adds diagnostics only.
    """
    holders: dict[str, CallbackPlan] = {}
    for cb in stage.callbacks:
        for claim in dict.fromkeys(cb.claims):
            first = holders.setdefault(claim, cb)
            if first is not cb:
                diags.error("SF515", _message(claim, first, cb), _hint(claim, first, cb, stage),
                            stage=stage.name, callback=cb.name)


def origin_of(cb: CallbackPlan) -> str:
    """Where a callback comes from, for messages: ``declared here``, ``migrated from stage 'a'``,
    ``added by default``."""
    if cb.origin == "migrated":
        return f"migrated from stage {cb.source_stage!r}"
    if cb.origin == "default":
        return "added by default"
    return "declared here"


def describe_claim(claim: str) -> str:
    """What holding ``claim`` means, for messages: ``steps the optimizer``."""
    head, _, rest = claim.partition(":")
    what = {
        "optimizer": f"step the optimizer {rest!r}" if rest else "step the stage's optimizer",
        "scheduler": f"step the scheduler {rest!r}" if rest else "step the stage's scheduler",
        "criterion": f"write the loss 'metric.{rest}'" if rest else "compute the loss",
        "files": f"write the files {rest}* under the logdir" if rest else "write the same files",
        "backward": f"back-propagate the loss 'metric.{rest}' (the second backward through "
                    "one graph fails)",
        "early_stopping": "decide early stopping",
        "validation": "manage validation (valid metrics, best epoch)",
    }
    return what.get(head, f"hold {claim!r}")


def _message(claim: str, first: CallbackPlan, second: CallbackPlan) -> str:
    return (f"callbacks {first.name!r} ({origin_of(first)}) and {second.name!r} "
            f"({origin_of(second)}) both claim {claim!r}: both would {describe_claim(claim)}, "
            "and only one of them may in a stage")


#: How to keep two holders of one kind apart instead of removing one.
_SEPARATE = {
    "optimizer": "with several optimizers (a dict), give each callback its own optimizer_key",
    "scheduler": "with several schedulers (a dict), give each callback its own scheduler_key",
    "criterion": "or give each its own loss name (metric_key=...)",
    "backward": "with several optimizers, give each optimizer callback its own loss "
                "(metric_key=...) written by its own criterion, or use one optimizer with "
                "parameter groups",
    "files": "or give each its own files (a different prefix or folder)",
}


def _hint(claim: str, first: CallbackPlan, second: CallbackPlan, stage: StagePlan) -> str:
    declared = [repr(cb.name) for cb in (second, first) if cb.origin == "declared"]
    parts = [f"keep one: remove {' or '.join(declared)} from this stage's callbacks"] if (
        declared) else []
    separate = _SEPARATE.get(claim.partition(":")[0])
    if separate is not None:
        parts.append(separate)
    for cb in (first, second):
        if cb.origin == "migrated":
            parts.append(f"stop {cb.name!r} migrating here: set migrate_from_previous_stage="
                         f"False on stage {stage.name!r}, or declare it scope='stage' in stage "
                         f"{cb.declared_in!r}")
        elif cb.origin == "default":
            other = second if cb is first else first
            parts.append(f"{cb.name!r} is added by default: give {other.name!r} "
                         f"kind={cb.kind or cb.name!r} so that it replaces the default")
    return "; ".join(parts)
