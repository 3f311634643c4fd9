"""Pass 8, checks: what would fail at run time and can be known now.

Requires: the final plan for this rank.
Guarantees: adds diagnostics only — keys read that nothing writes (SF501 error, SF502 warning
where the source cannot be known at compile time; an optional read inferred from code is not
required; a metric key by its level of the metric pipeline, and a reader that migrated from a
stage that has the key is told how to stay out), ``main_metric`` not a valid metric (SF503,
`metric_checks`), a training stage without its ``valid_loader``
(SF504), an inference stage with a ``train*`` loader (SF505), a loader name without a known prefix
(SF506), a stage without loaders (SF507), no model for the supervised handler (SF509); and, from
their own modules, exclusive claims (SF515, `exclusive`), component wiring and ``needs``
(SF509-SF514, `wiring`), metric direction (SF516, `direction`), reads too early in the batch
(SF521, `timing`).
"""

from __future__ import annotations

from collections.abc import Callable

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.direction import check_direction
from stagegraph.compiler.exclusive import check_exclusive
from stagegraph.compiler.inferred import inferred, source_note
from stagegraph.compiler.keys import NAMESPACES, namespace, provided_by
from stagegraph.compiler.metric_checks import check_main_metric, migration_hint, missing_metric
from stagegraph.compiler.metrics import LEVELS
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, StagePlan
from stagegraph.compiler.timing import check_timing
from stagegraph.compiler.wiring import check_wiring
from stagegraph.graph.enums import LoaderKind


def checks(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    provides = _Provides(plan)
    for stage in plan.stages:
        _check_loaders(stage, diags)
        covered = _covered(check_wiring(stage, plan, diags), check_main_metric(stage, diags))
        _check_keys(stage, diags, provides, covered)
        check_exclusive(stage, diags)
        check_direction(stage, diags)
        check_timing(stage, diags)
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
        if loader.kind is LoaderKind.unknown and (stage.is_infer or
                                                  loader.name != stage.valid_loader):
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


def _covered(pairs: frozenset[tuple[str, str]], keys: Callable[[str], bool]
             ) -> Callable[[str, str], bool]:
    """The reads another diagnostic reports: ``(callback, key)`` pairs (a missing loss, SF513)
    and keys (the main valid metric, SF503 / SF504)."""
    return lambda callback, key: (callback, key) in pairs or keys(key)


class _Provides:
    """``provides(stage_name)``: the test for keys a stage provides, built once per stage."""

    def __init__(self, plan: ExecutionPlan) -> None:
        self._stages = {s.name: s for s in plan.stages}
        self._tests: dict[str, Callable[[str], bool]] = {}

    def __call__(self, name: str | None) -> Callable[[str], bool]:
        name = name or ""
        if name not in self._tests:
            stage = self._stages.get(name)
            self._tests[name] = (provided_by(_sources(stage)) if stage is not None
                                 else lambda key: False)
        return self._tests[name]


def _check_keys(stage: StagePlan, diags: Diagnostics, provides: _Provides,
                covered: Callable[[str, str], bool]) -> None:
    """SF501/SF502 for reads nothing writes, but those ``covered(callback, key)`` (reported by
    another diagnostic: SF513 for a missing loss, SF503/SF504 for the main valid metric)."""
    sources = _sources(stage)
    provided = provides(stage.name)
    for cb in stage.callbacks:
        for key in cb.reads:
            if key.endswith(".*") or provided(key) or covered(cb.name, key):
                continue  # a wildcard read may find nothing
            found = inferred(cb, key, "read") if cb.inferred else None
            if found is not None and found.optional:  # the code does without it (`if`, `.get`)
                continue
            note = source_note(None if found is None else found.where)
            ns = namespace(key)
            in_source = cb.origin == "migrated" and provides(cb.source_stage)(key)
            if ns in LEVELS:
                message, hint = missing_metric(stage, cb, key, in_source, note)
                diags.error("SF501", message, hint, stage=stage.name, callback=cb.name, key=key)
                continue
            unknowable = (ns == "batch" and stage.batch_keys is None) or (
                ns == "output" and not stage.handler.declared)
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
                hint = f"{key!r} comes from {who}; add what writes it or fix the key"
                diags.error("SF501", message + _migrated(cb, in_source),
                            migration_hint(stage, cb) if in_source else hint,
                            stage=stage.name, callback=cb.name, key=key)


def _migrated(cb: CallbackPlan, in_source: bool) -> str:
    if cb.origin != "migrated":
        return ""
    where = ", where it is written" if in_source else ""
    return f" The callback migrated from stage {cb.source_stage!r}{where}."
