"""The readable text form of a plan: stages in run order, callbacks in order per event."""

from __future__ import annotations

from stagegraph.compiler.order import describe_inversion
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, LoaderPlan, StagePlan
from stagegraph.graph.enums import bucket_name


def plan_to_text(plan: ExecutionPlan) -> str:
    seed = f"seed {plan.seed}" + (" (deterministic)" if plan.deterministic else "")
    head = (f"plan for experiment {plan.experiment!r}: {seed}, device {plan.device}, "
            f"rank {plan.rank.value}, {len(plan.stages)} stage(s), hash {plan.hash[:12]}")
    lines = [head]
    for stage in plan.stages:
        lines.append("")
        lines.extend(_stage_lines(stage, len(plan.stages)))
    if plan.diagnostics:
        lines.append("")
        lines.append(f"diagnostics ({len(plan.errors)} error(s), {len(plan.warnings)} "
                     "warning(s)):")
        lines.extend(f"  {line}" for d in plan.diagnostics for line in str(d).splitlines())
    return "\n".join(lines)


def _stage_lines(stage: StagePlan, total: int) -> list[str]:
    kind = "inference" if stage.is_infer else (
        f"main metric {stage.main_metric!r} ({'min' if stage.minimize_metric else 'max'}), "
        f"valid loader {stage.valid_loader!r}")
    after = f", after {', '.join(map(repr, stage.after))}" if stage.after else ""
    lines = [f"stage {stage.index + 1}/{total} {stage.name!r}: {stage.num_epochs} epoch(s), "
             f"{kind}{after}"]
    if stage.check_run or stage.precision != "fp32" or not stage.fast_path:
        lines.append(f"  options: check_run={stage.check_run}, precision={stage.precision}, "
                     f"fast_path={stage.fast_path}")
    if stage.compile is not None:
        given = stage.compile.model_dump(exclude_defaults=True)
        given["backend"] = stage.compile.backend
        options = ", ".join(f"{k}={v!r}" for k, v in given.items())
        lines.append(f"  compiled: model and criterion, torch.compile({options})")
    loaders = ", ".join(_loader(ld, stage.fast_path) for ld in stage.loaders) or "none"
    lines.append(f"  loaders: {loaders}")
    lines.append(f"  batch handler: {stage.handler.type}")
    for m in stage.migrations:
        lines.append(f"  migrated from {m.source!r}: {', '.join(m.callbacks)}")
    if not stage.migrate_from_previous_stage and stage.after:
        lines.append("  migration: off (migrate_from_previous_stage=False)")
    lines.append("  callbacks:")
    width = max((len(cb.name) for cb in stage.callbacks), default=0)
    for i, cb in enumerate(stage.callbacks, 1):
        lines.append(f"    {i:>2}. {cb.name:<{width}}  {_describe(cb)}")
    for cb in stage.callbacks:
        for access in cb.inferred:
            optional = ", optional" if access.optional else ""
            lines.append(f"  inferred from code: {cb.name!r} {access.access}s {access.key!r} "
                         f"({access.where}, {access.event}{optional})")
    for edge in stage.inversions:
        lines.append(f"  note: {describe_inversion(edge, stage)}")
    lines.append("  events:")
    for event, names in stage.dispatch.items():
        lines.append(f"    {event}: {', '.join(names)}")
    return lines


def _loader(loader: LoaderPlan, stage_default: bool) -> str:
    """``train (train)``, and the loader's fast_path where it differs from the stage's."""
    own = "" if loader.fast_path == stage_default else f", fast_path={loader.fast_path}"
    return f"{loader.name} ({loader.kind.value}{own})"


def _describe(cb: CallbackPlan) -> str:
    origin = {"declared": "declared",
              "migrated": f"migrated from {cb.source_stage!r}",
              "default": "default"}[cb.origin]
    short = cb.type.rsplit(".", 1)[-1]
    return (f"{short}, {bucket_name(cb.order)}, node {cb.node.value}, scope {cb.scope.value}, "
            f"{origin}")
