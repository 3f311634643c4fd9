"""Per loader, whether the batch fast path is used and why not: before a run, by building the
loaders (never the model), and after one, as the run recorded it in its logdir.

The compiler cannot know it: the decision needs the live loader (`fastpath.decide`), and the
compiler never calls a factory. `preview` calls each stage's loader factories as the runner does
(the global seed set first), in a single process; a factory that needs what only a run has (a
process group for a `DistributedSampler` made without ``num_replicas``, say) makes that loader
"not known before the run", with the error as the reason. Under DDP the runner shards the train
loaders with a `DistributedSampler`, which the fast path draws from as well.

`record` is how a run keeps its decisions: ``LOGDIR/fast_path.json``, written atomically by the
master process when each stage starts; `recorded` reads it back (``stagegraph plan --logdir``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stagegraph.compiler.plan import ExecutionPlan, StagePlan
from stagegraph.runtime.callbacks.files import atomic_write
from stagegraph.runtime.errors import StagegraphWarning

if TYPE_CHECKING:  # torch: imported where loaders are built, so `recorded` reads without it
    from stagegraph.runtime.fastpath import Decision

#: The file a run records its decisions in, in its logdir.
FILE = "fast_path.json"
FORMAT = "stagegraph.fast_path/1"

Status = Literal["fast path", "DataLoader", "unknown"]


@dataclass(frozen=True)
class LoaderReport:
    """How loader ``loader`` of stage ``stage`` is iterated, and ``reason``."""

    stage: str
    loader: str
    status: Status
    reason: str

    def __str__(self) -> str:
        if self.status == "fast path":
            return f"loader {self.loader!r}: fast path ({self.reason})"
        if self.status == "DataLoader":
            return f"loader {self.loader!r}: DataLoader: {self.reason}"
        return f"loader {self.loader!r}: not known before the run: {self.reason}"

    @classmethod
    def of(cls, stage: str, decision: Decision) -> LoaderReport:
        return cls(stage, decision.loader, "fast path" if decision.used else "DataLoader",
                   decision.reason)


def preview(plan: ExecutionPlan) -> list[LoaderReport]:
    """Every loader of every stage of ``plan``: built, decided, let go. Requires a plan compiled
    from an experiment (``plan.experiment_object``)."""
    experiment = plan.experiment_object
    if experiment is None:
        raise ValueError("the plan was read from JSON: compile the experiment to build its "
                         "loaders")
    reports: list[LoaderReport] = []
    for stage in plan.stages:
        reports.extend(_stage(stage, experiment.stage(stage.name).loaders, plan.seed))
    return reports


def _stage(stage: StagePlan, factories: Mapping[str, Any], seed: int) -> list[LoaderReport]:
    from stagegraph.runtime.fastpath import decide
    from stagegraph.runtime.seeding import set_global_seed

    set_global_seed(seed)  # as the runner seeds before building a stage's loaders
    reports = []
    for loader in stage.loaders:
        try:
            built = _build(factories[loader.name])
        except Exception as err:  # the factory's own error: reported, never raised
            reports.append(LoaderReport(stage.name, loader.name, "unknown",
                                        _failure(factories[loader.name], err)))
            continue
        decision, _ = decide(loader.name, built, loader.fast_path)
        reports.append(LoaderReport.of(stage.name, decision))
    return reports


def _build(value: Any) -> Any:
    return value() if callable(value) else value


def _failure(factory: Any, err: Exception) -> str:
    name = getattr(factory, "__name__", type(factory).__name__)
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    detail = f"{type(err).__name__}: {message}" if message else type(err).__name__
    return (f"its factory {name} failed outside a run ({detail}); the run decides when it "
            "builds the loader (see LOGDIR/fast_path.json after it)")


def record(logdir: Path, plan: ExecutionPlan, stage: str, decisions: Mapping[str, Decision],
           *, keep: bool) -> None:
    """Write ``stage``'s decisions to ``logdir/fast_path.json`` (atomically); ``keep``: keep the
    other stages the file holds (a later stage, a resumed run), else start the file afresh."""
    data = _read(logdir / FILE) if keep else None
    stages: dict[str, Any] = dict(data["stages"]) if data else {}
    stages[stage] = {name: {"used": d.used, "reason": d.reason} for name, d in decisions.items()}
    content = {"format": FORMAT, "experiment": plan.experiment, "plan_hash": plan.hash,
               "stages": stages}
    try:
        atomic_write(logdir / FILE, (json.dumps(content, indent=2) + "\n").encode("utf-8"))
    except OSError as err:  # a note for `stagegraph plan`: never worth stopping the run for
        warnings.warn(StagegraphWarning(
            f"stage {stage!r}: could not record the fast-path decisions in {logdir / FILE}: "
            f"{err.strerror or err}"), stacklevel=2)


def recorded(logdir: Path) -> list[LoaderReport] | None:
    """The decisions the run in ``logdir`` recorded, or ``None`` when it has none (readable)."""
    data = _read(logdir / FILE)
    if data is None:
        return None
    try:
        return [LoaderReport(str(stage), str(name), "fast path" if item["used"] else
                             "DataLoader", str(item["reason"]))
                for stage, loaders in data["stages"].items() for name, item in loaders.items()]
    except (AttributeError, KeyError, TypeError):  # written by something else
        return None


def recorded_by(logdir: Path) -> str | None:
    """The name of the experiment whose run wrote ``logdir``'s record (``None``: no record)."""
    data = _read(logdir / FILE)
    return str(data.get("experiment")) if data is not None else None


def _read(path: Path) -> dict[str, Any] | None:
    """The file's content, or ``None`` when it is missing, unreadable or of another format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and data.get("format") == FORMAT
            and isinstance(data.get("stages"), dict)):
        return None
    return data

