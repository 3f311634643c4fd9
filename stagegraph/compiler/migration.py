"""Pass 3, migration: hand experiment-scoped callbacks along the stage edges.

Requires: stages in run order (the stage graph pass); the plan bound to its experiment
(``plan.experiment_object``) to compare shadowed instances, else they count as different.
Guarantees: every stage with ``migrate_from_previous_stage`` holds the experiment-scoped callbacks
of its predecessors (the very same instances, so their state carries over), as entries with
origin ``migrated``. A migrating callback replaces a declared one of the same name in its place,
as the seed does: the stage's own callbacks are first sorted by their declared order (stably),
and the migrating instance takes the slot its namesake sorted into (``shadowed_order`` records
that declaration's order, for `explain`). SF301 (error) when the declared instance is configured
differently — its configuration would be silently ignored — and SF303 (warning) when it is
configured the same. One
with a new name comes after the stage's own callbacks. Two predecessors handing over different
instances under one name is an error (SF302). ``migrations`` records what crossed each edge.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.plan import CallbackPlan, ExecutionPlan, MigrationPlan, StagePlan
from stagegraph.graph.enums import CallbackScope


def migration(plan: ExecutionPlan, diags: Diagnostics) -> ExecutionPlan:
    done: dict[str, StagePlan] = {}
    out = []
    live = _Instances(plan.experiment_object)
    for stage in plan.stages:
        if stage.migrate_from_previous_stage:
            stage = _receive(stage, [done[p] for p in stage.after if p in done], live, diags)
        done[stage.name] = stage
        out.append(stage)
    return plan.model_copy(update={"stages": tuple(out)})


def _identity(cb: CallbackPlan) -> tuple[str, str]:
    # Defaults are added after migration, so every entry here names a declared instance.
    return (cb.declared_in, cb.name)


def _receive(stage: StagePlan, predecessors: list[StagePlan], live: _Instances,
             diags: Diagnostics) -> StagePlan:
    incoming: dict[str, CallbackPlan] = {}
    migrations = []
    for pred in predecessors:
        moving = [cb for cb in pred.callbacks if cb.scope is CallbackScope.experiment]
        for cb in moving:
            other = incoming.get(cb.name)
            if other is not None and _identity(other) != _identity(cb):
                diags.error("SF302", f"stages {other.source_stage!r} and {pred.name!r} both hand "
                            f"over a callback named {cb.name!r}, but they are different instances",
                            "rename one of them, or set migrate_from_previous_stage=False on "
                            "this stage", stage=stage.name, callback=cb.name)
                continue
            incoming[cb.name] = cb.model_copy(update={"origin": "migrated",
                                                      "source_stage": pred.name})
        if moving:
            migrations.append(MigrationPlan(source=pred.name, target=stage.name,
                                            callbacks=tuple(cb.name for cb in moving)))
    if not incoming:
        return stage
    callbacks = []
    for cb in sorted(stage.callbacks, key=lambda c: c.order):  # stable: the seed's first sort
        arriving = incoming.pop(cb.name, None)
        if arriving is None:
            callbacks.append(cb)
            continue
        if _identity(arriving) != _identity(cb):
            _report_shadow(stage, cb, arriving, live, diags)
            # The diagnostic is about the declared instance: its own SF301/SF303 setting counts
            # (the lint pass looks at the callback the plan keeps under that name).
            shadow_lints = {c: v for c, v in cb.lints.items() if c in ("SF301", "SF303")}
            arriving = arriving.model_copy(update={
                "shadowed_order": cb.order, "lints": {**arriving.lints, **shadow_lints}})
        callbacks.append(arriving)
    callbacks.extend(incoming.values())
    return stage.model_copy(update={"callbacks": tuple(callbacks),
                                    "migrations": tuple(migrations)})


def _report_shadow(stage: StagePlan, declared: CallbackPlan, arriving: CallbackPlan,
                   live: _Instances, diags: Diagnostics) -> None:
    name, source = declared.name, arriving.source_stage
    unused = (f"callback {name!r} declared here is unused: the experiment-scoped {name!r} "
              f"migrating from {source!r} continues in its place")
    difference = differs(live.get(arriving), live.get(declared))
    if difference is None:
        diags.warning("SF303", f"{unused} (configured the same, with the state it has so far)",
                      f"remove {name!r} from this stage's callbacks; or, to start afresh with "
                      f"the one declared here, set migrate_from_previous_stage=False on stage "
                      f"{stage.name!r}; lints={{'SF303': 'allow'}} keeps this on purpose",
                      stage=stage.name, callback=name)
        return
    diags.error("SF301", f"{unused}, so the configuration declared here is ignored: "
                f"{difference}",
                f"to use the one declared here, set migrate_from_previous_stage=False on stage "
                f"{stage.name!r}, or declare the migrating one scope='stage' in stage "
                f"{arriving.declared_in!r}; to keep the migrating one, remove {name!r} from this "
                f"stage's callbacks; lints={{'SF301': 'allow'}} keeps the migrating one on "
                "purpose (the seed runner's behaviour)", stage=stage.name, callback=name)


class _Instances:
    """The live callback instances of the plan's experiment, by (stage, name); built lazily."""

    def __init__(self, experiment: Any) -> None:
        self._experiment = experiment
        self._by_place: dict[tuple[str, str], Any] | None = None

    def get(self, cb: CallbackPlan) -> Any:
        if self._by_place is None:
            self._by_place = {}
            for stage in getattr(self._experiment, "stages", ()):
                if isinstance(stage.callbacks, Mapping):
                    for name, instance in stage.callbacks.items():
                        self._by_place.setdefault((stage.name, name), instance)
        return self._by_place.get(_identity(cb), _UNKNOWN)


_UNKNOWN: Any = object()
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40


def differs(migrating: Any, declared: Any) -> str | None:
    """``None`` when two callback instances are configured alike, else what differs.

    Alike: the same class and equal public instance attributes (``vars()`` without ``_names``
    and ``scope``, which differs by construction).
    What cannot be compared — no instance known, no ``vars()``, an ``==`` that raises or does not
    give a bool (arrays, tensors) — counts as different.

    >>> class C:
    ...     def __init__(self, steps): self.steps = steps
    >>> differs(C(4), C(4)) is None, differs(C(4), C(2))
    (True, 'steps=4 migrating, 2 here')
    """
    if migrating is _UNKNOWN or declared is _UNKNOWN:
        return "the two instances cannot be compared"
    if type(migrating) is not type(declared):
        return (f"the migrating one is of class {type(migrating).__name__}, the one declared "
                f"here of class {type(declared).__name__}")
    try:
        theirs, ours = _public(migrating), _public(declared)
    except TypeError:
        return "their attributes cannot be compared"
    absent = object()
    changed = [k for k in dict.fromkeys([*theirs, *ours])
               if not _equal(theirs.get(k, absent), ours.get(k, absent))]
    if not changed:
        return None
    shown = "; ".join(f"{k}={_show(theirs, k)} migrating, {_show(ours, k)} here"
                      for k in changed[:3])
    return shown + (f" (and {len(changed) - 3} more)" if len(changed) > 3 else "")


def _public(instance: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(instance).items()
            if not k.startswith("_") and k not in _NOT_CONFIGURATION}


#: ``scope`` differs by construction (only one of the two migrates); ``lints`` set levels of
#: diagnostics, not what the callback does.
_NOT_CONFIGURATION = frozenset({"scope", "lints"})


def _show(values: dict[str, Any], key: str) -> str:
    return _SHORT.repr(values[key]) if key in values else "unset"


def _equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        result = a == b
        if isinstance(result, bool):
            return result
        return type(result).__name__ in ("bool", "bool_") and bool(result)  # numpy scalars
    except Exception:  # an == that raises is "cannot compare", which counts as different
        return False
