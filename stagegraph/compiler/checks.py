"""Pass 8, checks: what would fail at run time and can be known now.

Requires: the final plan for this rank.
Guarantees: adds diagnostics only — keys read that nothing writes (SF501 error, SF502 warning
where the source cannot be known at compile time; an optional read inferred from code is not
required), ``main_metric`` unwritten (SF503), a training stage without its ``valid_loader``
(SF504), an inference stage with a ``train*`` loader (SF505), a loader name without a known prefix
(SF506), a stage without loaders (SF507), no model for the supervised handler (SF509); and, from
their own modules, exclusive claims (SF515, `exclusive`), component wiring and ``needs``
(SF509-SF514, `wiring`), metric direction (SF516, `direction`).
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.direction import check_direction
from stagegraph.compiler.exclusive import check_exclusive
from stagegraph.compiler.inferred import inferred, source_note
from stagegraph.compiler.keys import NAMESPACES, matches, namespace, provided_by
from stagegraph.compiler.plan import ExecutionPlan, StagePlan
from stagegraph.compiler.wiring import check_wiring
from stagegraph.graph.enums import LoaderKind


def checks(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    for stage in plan.stages:
        _check_loaders(stage, diags)
        covered = check_wiring(stage, plan, diags)
        _check_keys(stage, diags, covered)
        check_exclusive(stage, diags)
        check_direction(stage, diags)
        _check_main_metric(stage, diags)
        if stage.handler.type.startswith("SupervisedHandler") and "model" not in stage.components:
            diags.error("SF509", "no model: the supervised batch handler calls runner.model",
                        "pass model= to Experiment(...) or to add_stage(...), as a module or a "
                        "factory", stage=stage.name, param="model")
    return plan


def _check_loaders(stage: StagePlan, diags: Diagnostics) -> None:
    names = [loader.name for loader in stage.loaders]
    if not names:
        diags.error("SF507", "the stage has no loaders, so it would do nothing",
                    "pass loaders={'train': ..., 'valid': ...}", stage=stage.name,
                    param="loaders")
        return
    for loader in stage.loaders:
        if loader.kind is LoaderKind.unknown:
            diags.warning("SF506", f"loader {loader.name!r} starts with none of 'train', 'valid'"
                          ", 'infer', so it runs in eval mode without gradients and counts as "
                          "neither training nor validation",
                          f"rename it, e.g. 'train_{loader.name}' or 'valid_{loader.name}'",
                          stage=stage.name, loader=loader.name)
    if stage.is_infer:
        for loader in stage.loaders:
            if loader.kind is LoaderKind.train:
                diags.error("SF505", f"inference stage has a training loader {loader.name!r}",
                            "inference stages (named 'infer*') take 'infer*' or 'valid*' "
                            "loaders; rename the stage if it should train",
                            stage=stage.name, loader=loader.name)
    elif stage.valid_loader not in names:
        diags.error("SF504", f"valid_loader {stage.valid_loader!r} is not among the stage's "
                    f"loaders ({', '.join(map(repr, names))})." +
                    did_you_mean(stage.valid_loader, names),
                    "add that loader, or set valid_loader= to one of the loaders",
                    stage=stage.name, param="valid_loader")


def _sources(stage: StagePlan) -> list[str]:
    written = [k for cb in stage.callbacks for k in cb.writes]
    batch = [f"batch.{k}" for k in stage.batch_keys] if stage.batch_keys is not None else list(
        k for k in stage.handler.reads if k.startswith("batch."))
    return [*written, *stage.handler.writes, *batch]


def _check_keys(stage: StagePlan, diags: Diagnostics,
                covered: frozenset[tuple[str, str]] = frozenset()) -> None:
    """SF501/SF502 for reads nothing writes, but those ``covered`` (already reported)."""
    sources = _sources(stage)
    provided = provided_by(sources)
    for cb in stage.callbacks:
        for key in cb.reads:
            if key.endswith(".*") or provided(key) or (cb.name, key) in covered:
                continue  # a wildcard read may find nothing
            ns = namespace(key)
            unknowable = (ns == "batch" and stage.batch_keys is None) or (
                ns == "output" and not stage.handler.declared)
            found = inferred(cb, key, "read") if cb.inferred else None
            if found is not None and found.optional:  # the code does without it (`if`, `.get`)
                continue
            note = source_note(None if found is None else found.where)
            message = (f"reads {key!r}{note}, which nothing in this stage writes." +
                       did_you_mean(key, [s for s in sources if namespace(s) == ns]))
            if unknowable:
                hint = ("loaders are not read at compile time: declare batch_keys=[...] on the "
                        "stage to check batch keys" if ns == "batch" else
                        "declare the handler's outputs with @stagegraph.handler(writes=[...])")
                diags.warning("SF502", message + " Its source cannot be checked before the run.",
                              hint, stage=stage.name, callback=cb.name, key=key)
            else:
                who = NAMESPACES.get(ns, f"a callback declaring writes=[{key!r}]")
                diags.error("SF501", message, f"{key!r} comes from {who}; add what writes it "
                            "or fix the key", stage=stage.name, callback=cb.name, key=key)


def _check_main_metric(stage: StagePlan, diags: Diagnostics) -> None:
    if stage.is_infer:
        return
    key = f"metric.{stage.main_metric}"
    writers = [k for cb in stage.callbacks for k in cb.writes] + list(stage.handler.writes)
    if any(matches(w, key) for w in writers):
        return
    metrics = [w.split(".", 1)[1] for w in writers if w.startswith("metric.")]
    diags.error("SF503", f"main_metric {stage.main_metric!r} is written by no callback of this "
                "stage, so validation and checkpoints could not rank epochs." +
                did_you_mean(stage.main_metric, metrics),
                f"metrics written here: {', '.join(map(repr, metrics)) or 'none'}; add a "
                "criterion or a metric callback, or change main_metric",
                stage=stage.name, param="main_metric")
