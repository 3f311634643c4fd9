"""The last pass, lint levels: each diagnostic at the level the experiment set for its place.

Requires: every other pass done (diagnostics located by stage and callback).
Guarantees: a diagnostic takes the level of the most specific setting that names its code — the
callback's ``lints``, then its stage's, then the experiment's — else the level it was reported
with (the rule's default, see `stagegraph.compiler.rules`); ``allow`` removes it. The settings are
part of the plan, so they count in its hash.
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostic, Diagnostics, Severity
from stagegraph.compiler.plan import ExecutionPlan, StagePlan


def lint_levels(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    stages = {s.name: s for s in plan.stages}
    kept: list[Diagnostic] = []
    for diagnostic in diags.items:
        level = _level(plan, stages, diagnostic)
        if level == "allow":
            continue
        if level is not None and level != diagnostic.severity.value:
            diagnostic = diagnostic.model_copy(update={"severity": Severity(level)})
        kept.append(diagnostic)
    diags.items = kept
    return plan


def _level(plan: ExecutionPlan, stages: dict[str, StagePlan], diagnostic: Diagnostic
           ) -> str | None:
    where = diagnostic.location
    stage = stages.get(where.stage) if where.stage is not None else None
    return setting(plan, stage, where.callback, diagnostic.code)


def setting(plan: ExecutionPlan, stage: StagePlan | None, callback: str | None, code: str
            ) -> str | None:
    """The level the experiment set for ``code`` at this place (callback > stage > experiment),
    or ``None`` when nothing names it."""
    if stage is not None and callback is not None:
        for cb in stage.callbacks:
            if cb.name == callback and code in cb.lints:
                return cb.lints[code]
    if stage is not None and code in stage.lints:
        return stage.lints[code]
    return plan.lints.get(code)
