"""What a resume checkpoint holds, and how it goes back into a runner.

A snapshot is taken after every loader and every ``on_epoch_end`` callback of an epoch has run:
the checkpoint callback's data (model, optimizer, scheduler, GradScaler, counters, metrics, the
state of every callback of the stage by name) plus what only resuming needs — where the run was
(stage, epoch, whether the stage asked to stop early), the plan it ran, the random generators,
the loaders' private generators, the experiment-level model when the stage trains a model of its
own, the state of experiment-scoped callbacks that sit this stage out but come back later, and
the optimizer state an earlier stage left for a later one (``load_from_previous_stage``) while
the stage running has no optimizer of its own to replace it.

When the checkpoint callback has serialised that same data this epoch (`serialised_state` says
when that is certain), the snapshot holds only the state of the callbacks that ran since, and the
resume-only part: the rest comes from the callback's file, kept beside the checkpoint.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from stagegraph.compiler.diagnostics import Diagnostic, Location, Severity
from stagegraph.runtime import rng
from stagegraph.runtime.binding import StageBinding
from stagegraph.runtime.callbacks.checkpoint import CheckpointCallback, checkpoint_data
from stagegraph.runtime.callbacks.files import (
    FileRecord,
    load_state_into,
    plain,
    state_of,
    unwrap,
)
from stagegraph.runtime.errors import ResumeError
from stagegraph.runtime.optim_state import CarriedOptimizer
from stagegraph.runtime.resume.store import RESUME_FORMAT


def snapshot(runner: Any, *, shared_model: Any, carried: Mapping[str, Any],
             check: bool, only_callbacks: Collection[str] | None = None) -> dict[str, Any]:
    """The resume checkpoint of ``runner`` at the end of an epoch.

    ``only_callbacks``: the rest of `checkpoint_data` is stored elsewhere, identical; only the
    state of these callbacks may have changed since, and is taken.
    """
    if only_callbacks is None:
        data = checkpoint_data(runner)
    else:
        callbacks = runner.callbacks or {}
        data = {"callbacks": plain({name: callbacks[name].state_dict()
                                    for name in only_callbacks})}
    data["format"] = RESUME_FORMAT
    own_model = shared_model is not None and shared_model is not unwrap(runner.model)
    data["resume"] = plain({
        "stage": runner.stage_name,
        "epoch": runner.epoch,
        "stage_done": bool(runner.need_early_stop),
        "is_best_valid": bool(runner.is_best_valid),
        "check": check,
        "plan": runner.plan.to_json(indent=None),
        # The effective config file the experiment was built from (None: written in Python).
        "config": getattr(runner.experiment, "config", None),
        "rng": rng.capture(),
        "loaders": rng.capture_loaders(runner.loaders or {}),
        "shared_model": state_of(shared_model) if own_model else None,
        "carried": {key: callback.state_dict() for key, callback in carried.items()},
        "kept_optimizer": _kept_optimizer(runner),
    }, "resume checkpoint")
    return data


def _kept_optimizer(runner: Any) -> dict[str, Any] | None:
    """The optimizer state a later stage starts from, unless this stage's optimizer replaces it
    when it ends (it is in the checkpoint anyway)."""
    kept = getattr(runner, "kept_optimizer", None)
    if kept is None or runner.optimizer is not None:
        return None
    return {"stage": kept.stage, "state": kept.state, "names": [list(g) for g in kept.names]}


def serialised_state(binding: StageBinding, global_epoch: int
                     ) -> tuple[FileRecord, list[str]] | None:
    """This epoch's file of a checkpoint callback when it holds exactly the checkpoint's data,
    and the callbacks whose state may have changed since it was written.

    Exactly: between that callback's ``on_epoch_end`` and the snapshot only later
    ``on_epoch_end`` hooks run, and when every one of them is a checkpoint callback's own (which
    changes nothing but its own state) the model, optimizer, counters and metrics are as the
    file has them. Otherwise ``None``: the snapshot is serialised on its own.
    """
    hooks = binding.table("on_epoch_end")
    for i in range(len(hooks) - 1, -1, -1):
        hook: Any = hooks[i]
        if getattr(hook, "__func__", None) is not CheckpointCallback.on_epoch_end:
            return None
        saved = hook.__self__.saved
        if saved is not None and saved[0] == global_epoch:
            return saved[1], [binding.name_of(later) for later in hooks[i:]]
    return None


def restore_callbacks(runner: Any, data: Mapping[str, Any], *, carried: Mapping[str, Any]
                      ) -> None:
    """Counters and callback state, before ``on_stage_start`` (which keeps restored state).

    Raises `ResumeError` (``SF605``) naming a callback whose state does not load.
    """
    stage, resume, counters = runner.stage_name, data["resume"], data["counters"]
    runner.epoch = int(counters["epoch"])
    runner.global_epoch = int(counters["global_epoch"])
    runner.global_batch_step = int(counters["global_batch_step"])
    runner.global_sample_step = int(counters["global_sample_step"])
    saved = data.get("callbacks") or {}
    for name, callback in (runner.callbacks or {}).items():
        if name in saved:
            _load(stage, f"callback {name!r}", lambda c=callback, s=saved[name]:
                  c.load_state_dict(s), callback=name)
    for key, callback in carried.items():
        state = (resume.get("carried") or {}).get(key)
        if state is not None:
            _load(stage, f"callback {key!r}", lambda c=callback, s=state: c.load_state_dict(s))


def restore_components(runner: Any, data: Mapping[str, Any], *, shared_model: Any) -> None:
    """After ``on_stage_start``: model, optimizer, scheduler, scaler, loaders, generators, metrics.

    After, so that what ``on_stage_start`` does to the components (load pretrained weights,
    re-initialise a head, add a parameter group) is replaced by the state it led to. Raises
    `ResumeError` (``SF605``) naming what does not fit.
    """
    stage, resume = runner.stage_name, data["resume"]
    for what in ("model", "optimizer", "scheduler", "scaler"):
        _load(stage, what, lambda what=what: load_state_into(getattr(runner, what), data[what]))
    if resume.get("shared_model") is not None and shared_model is not None:
        _load(stage, "experiment model",
              lambda: load_state_into(shared_model, resume["shared_model"]))
    kept = resume.get("kept_optimizer")
    if kept is not None:
        runner.kept_optimizer = CarriedOptimizer(kept["stage"], kept["state"],
                                                 tuple(tuple(g) for g in kept["names"]))
    rng.restore_loaders(runner.loaders or {}, resume.get("loaders") or {})
    rng.restore(resume["rng"])
    runner.epoch_metrics = dict(data.get("epoch_metrics") or {})
    runner.valid_metrics = dict(data.get("valid_metrics") or {})
    runner.best_valid_metrics = dict(data.get("best_valid_metrics") or {})
    runner.is_best_valid = bool(resume.get("is_best_valid", False))


def _load(stage: str, what: str, load: Any, callback: str | None = None) -> None:
    try:
        load()
    except Exception as err:
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        reason = f"{type(err).__name__}: {text if len(text) <= 300 else text[:297] + '...'}"
        diagnostic = Diagnostic(
            code="SF605", severity=Severity.error,
            location=Location(stage=stage, callback=callback),
            message=f"the checkpoint's {what} state does not fit this run's {what} ({reason})",
            hint=f"the {what} changed since the checkpoint was written (a factory or class that "
                 "the plan does not record); resume with the code the checkpoint was written "
                 "by, or start over without --resume")
        raise ResumeError(f"cannot restore the {what} of stage {stage!r}:",
                          [diagnostic]) from err
