"""`CheckpointCallback`: last, best and the N best epochs of each stage, written atomically.

torch is imported inside the methods that need it, so importing this module does not start it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder
from stagegraph.runtime.callbacks.files import (
    FileRecord,
    load_state_into,
    mismatch,
    plain,
    save_file,
    state_of,
)
from stagegraph.runtime.callbacks.writer import (
    PendingFile,
    deferred,
    host_copy,
    record_fields,
    resolved,
    settled,
    writer_of,
)
from stagegraph.runtime.errors import CheckpointFileError, StagegraphWarning

FORMAT = "stagegraph.checkpoint/1"


def checkpoint_data(runner: Any) -> dict[str, Any]:
    """Everything needed to inspect or resume a run, as ``weights_only``-loadable data."""
    plan = getattr(runner, "plan", None)
    callbacks = getattr(runner, "callbacks", None) or {}
    data = {
        "format": FORMAT,
        "plan_hash": getattr(plan, "hash", None),
        "experiment": getattr(plan, "experiment", None),
        "stage": runner.stage_name,
        "counters": {
            "stage": runner.stage_name, "epoch": runner.epoch, "global_epoch": runner.global_epoch,
            "global_batch_step": runner.global_batch_step,
            "global_sample_step": runner.global_sample_step,
        },
        "model": state_of(runner.model),
        "optimizer": state_of(runner.optimizer),
        "scheduler": state_of(runner.scheduler),
        "scaler": state_of(getattr(runner, "scaler", None)),
        "epoch_metrics": dict(runner.epoch_metrics),
        "valid_metrics": dict(runner.valid_metrics),
        "best_valid_metrics": dict(runner.best_valid_metrics),
        "callbacks": {name: cb.state_dict() for name, cb in callbacks.items()},
    }
    return plain(data)


@dataclass(frozen=True)
class NewBest:
    """A checkpoint that became the stage's best (the console prints it)."""

    path: Path
    metric: str
    value: float | None
    epoch: int
    global_epoch: int

    def __str__(self) -> str:
        value = "" if self.value is None else f" {self.metric}={self.value:.4g}"
        return f"new best checkpoint {self.path} (epoch {self.epoch}, valid{value})"


class CheckpointCallback(Callback):
    """Saves checkpoints under ``logdir/checkpoints/`` at each epoch end (master rank only).

    Files, per stage: ``{stage}.last.pth`` (every epoch), ``{stage}.best.pth`` (when the epoch is
    the best so far, ``runner.is_best_valid``), ``{stage}.epoch{N}.pth`` for the ``save_n_best``
    best epochs by the main valid metric (0 keeps none), and ``{stage}.exception.pth`` when the run
    fails, for post-mortem (best and last are left alone) — removed when the stage completes
    (a resumed run got past the failure). ``prefix`` starts every file name
    (``prefix="ema_"`` writes ``ema_{stage}.best.pth``), so two checkpoint callbacks of one stage
    can write different files; each claims its prefix (``files:checkpoints/{prefix}``), and two
    with the same prefix in a stage are an error. Each file is written atomically
    (temporary file in the same folder, fsync, ``os.replace``) and loads with
    ``torch.load(path, weights_only=True)``; see :func:`checkpoint_data` for its content. The
    model is unwrapped from DDP before saving. The files of one epoch hold the same data: it is
    serialised once, into the first of them (``best``, else ``last``), and the others are hard
    links to it (copies where the file system has no links). The data is copied to host memory
    at the epoch end and written by the run's checkpoint writer, in the background while the next
    epoch trains (see `writer`); the runner waits for it before the next checkpoint. With
    ``load_best_on_stage_end=True`` the best weights are loaded back into the model when the
    stage ends, after checking that the file is the one saved (its size and sha256, which
    resume checkpoints hold too, with a copy of the file: see docs/checkpoints.md).

    Without a logdir no file is written (a warning says so); the best weights are then kept in
    memory, so ``load_best_on_stage_end`` still works.

    ``new_best`` is a `NewBest` record (file, metric, value, epoch) of the latest epoch that
    became the best file, which the console prints; ``None`` until one in the stage.
    """

    order: ClassVar[int] = CallbackOrder.External
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("valid_metric.{main_metric}", "valid.is_best")
    kind: ClassVar[str | None] = "checkpoint"
    needs: ClassVar[tuple[str, ...]] = ("logdir",)
    watch: ClassVar[str | None] = "{main_metric}"

    def __init__(self, save_n_best: int = 1, load_best_on_stage_end: bool = False,
                 prefix: str = "", **declarations: Any) -> None:
        if not isinstance(save_n_best, int) or save_n_best < 0:
            raise ValueError(f"save_n_best must be an int >= 0, not {save_n_best!r}")
        if not isinstance(prefix, str) or any(sep in prefix for sep in ("/", "\\")):
            raise ValueError(f"prefix must be a file name prefix without '/', not {prefix!r}")
        declarations.setdefault("claims", (f"files:checkpoints/{prefix}",))
        super().__init__(**declarations)
        self.save_n_best = save_n_best
        self.load_best_on_stage_end = load_best_on_stage_end
        self.prefix = prefix
        self.folder: Path | None = None
        self.top: list[tuple[float, int, str]] = []  # (score, epoch, file name), best first
        #: The best file of the stage and its record (pending while it is being written);
        #: ``None`` before one.
        self.best: tuple[str, FileRecord | PendingFile] | None = None
        #: This epoch's serialisation, for the resume checkpoint: (global epoch, the file).
        self.saved: tuple[int, FileRecord | PendingFile] | None = None
        self._restored = False
        self._best_in_memory: Any = None
        self.new_best: NewBest | None = None

    def on_stage_start(self, runner: Any) -> None:
        self._best_in_memory = None
        self.saved = None
        self.new_best = None
        if not self._restored:
            self.top, self.best = [], None
        self._restored = False
        if runner.logdir is None:
            self.folder = None
            warnings.warn("CheckpointCallback: no logdir, so no checkpoint is written (pass "
                          "logdir= or --logdir); the best weights are kept in memory",
                          stacklevel=2)
            return
        self.folder = Path(runner.logdir) / "checkpoints"
        self.folder.mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, runner: Any) -> None:
        if self.folder is None:
            if self.load_best_on_stage_end and runner.is_best_valid:
                self._best_in_memory = _cloned(state_of(runner.model))
            return
        stage = f"{self.prefix}{runner.stage_name}"
        names = [f"{stage}.best.pth"] if runner.is_best_valid else []
        names.append(f"{stage}.last.pth")
        score = runner.valid_metrics.get(runner.main_metric)
        top: list[tuple[float, int, str]] = self.top
        dropped: list[str] = []
        if self.save_n_best and score is not None and math.isfinite(float(score)):
            top, dropped, kept = self._rank(float(score), runner)
            if kept:
                names.append(kept)
        record = self._write(runner, names, dropped)
        self.saved = (int(runner.global_epoch), record)
        if runner.is_best_valid:
            self.best = (names[0], record)
            self.new_best = NewBest(self._path(names[0]), runner.main_metric,
                                    None if score is None else float(score), int(runner.epoch),
                                    int(runner.global_epoch))
        self.top = top

    def _write(self, runner: Any, names: list[str], dropped: list[str]) -> PendingFile:
        """Hand this epoch's files to the run's checkpoint writer; the epoch files that left the
        ranking are deleted once the new files are durable."""
        # Taken before this epoch changes the ranking, so the files hold the state as of the
        # callbacks that ran before this one; copied, since the next epoch changes the model.
        with deferred():
            data = host_copy(checkpoint_data(runner))
        paths = [self._path(name) for name in names]
        old_files = [self._path(old) for old in dropped]

        def write() -> FileRecord:
            record = save_file(resolved(data), *paths)
            for old in old_files:
                old.unlink(missing_ok=True)
            return record

        return writer_of(runner).write(paths[0], write)

    def on_stage_end(self, runner: Any) -> None:
        if self.folder is not None:  # the stage completed: a failure it had is behind it
            self._path(f"{self.prefix}{runner.stage_name}.exception.pth").unlink(missing_ok=True)
        self.saved = None
        if not self.load_best_on_stage_end:
            return
        if self.folder is None:
            load_state_into(runner.model, self._best_in_memory)
            return
        writer_of(runner).wait()  # the best file may still be being written
        if self.best is None:
            warnings.warn(f"CheckpointCallback: stage {runner.stage_name!r} had no best epoch (no "
                          f"epoch's valid metric {runner.main_metric!r} was finite and better "
                          "than the ones before), so load_best_on_stage_end loads nothing: the "
                          "model keeps the weights of its last epoch", stacklevel=2)
            return
        name, written = self.best
        path, record = self._path(name), settled(written)
        problem = mismatch(path, record.bytes, record.sha256)
        if problem is not None:
            if problem.startswith("is damaged: "):
                problem = f"changed since this stage saved it ({problem[12:]})"
            raise CheckpointFileError(
                f"{path}, the best weights of stage {runner.stage_name!r}, {problem}, "
                "so load_best_on_stage_end cannot load them; put the file back, or resume the "
                "run from its last checkpoint (--resume), which keeps a copy of it")
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        load_state_into(runner.model, state["model"])

    def resume_files(self) -> dict[str, FileRecord | PendingFile]:
        """The files a later epoch reads back, by path relative to the logdir: the best weights
        (a `PendingFile` while the writer is writing it).

        A resume checkpoint keeps a copy of each and verifies it before resuming.
        """
        if self.folder is None or self.best is None:
            return {}
        name, record = self.best
        if isinstance(record, FileRecord):  # restored from a checkpoint: its name only
            record = record.at(self._path(name))
        return {f"{self.folder.name}/{name}": record}

    def on_exception(self, runner: Any) -> None:
        # Never mask the original error: a failure here is reported as a warning.
        try:
            folder = self.folder or (Path(runner.logdir) / "checkpoints" if runner.logdir else None)
            if folder is None or runner.model is None:
                return
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.prefix}{runner.stage_name}.exception.pth"
            data = checkpoint_data(runner)
            data["exception"] = repr(runner.exception)
            save_file(data, path)
        except Exception as err:
            warnings.warn(StagegraphWarning(_not_written(runner, self.prefix, err)), stacklevel=2)

    def _rank(self, score: float, runner: Any
              ) -> tuple[list[tuple[float, int, str]], list[str], str | None]:
        """The ranking with this epoch, the files it drops, this epoch's file if it is kept."""
        sign = 1.0 if runner.minimize_metric else -1.0
        name = f"{self.prefix}{runner.stage_name}.epoch{runner.epoch}.pth"
        ranked = sorted([*self.top, (score, runner.epoch, name)],
                        key=lambda item: (sign * item[0], item[1]))
        kept, dropped = ranked[: self.save_n_best], ranked[self.save_n_best:]
        return (kept, [old for _, _, old in dropped if old != name],
                name if any(item[2] == name for item in kept) else None)

    def _path(self, name: str) -> Path:
        assert self.folder is not None, "on_stage_start sets the folder"
        return self.folder / name

    def state_dict(self) -> dict[str, Any]:
        """The ranking and the best file (its size and sha256 wait for the writer to write it,
        or are `writer.Later` values inside `writer.deferred`)."""
        best = None
        if self.best is not None:
            size, sha256 = record_fields(self.best[1])
            best = {"file": self.best[0], "bytes": size, "sha256": sha256}
        return {"top": [list(item) for item in self.top], "best": best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the ranking of epoch files and the best file; ``on_stage_start`` keeps them."""
        self.top = [(float(s), int(e), str(n)) for s, e, n in state.get("top", [])]
        best = state.get("best")
        self.best = None if best is None else (
            str(best["file"]), FileRecord(Path(str(best["file"])), int(best["bytes"]),
                                          str(best["sha256"])))
        self._restored = True

    def __repr__(self) -> str:
        prefix = f", prefix={self.prefix!r}" if self.prefix else ""
        return (f"CheckpointCallback(save_n_best={self.save_n_best}, "
                f"load_best_on_stage_end={self.load_best_on_stage_end}{prefix})")


def _not_written(runner: Any, prefix: str, err: Exception) -> str:
    """What to say when the exception checkpoint cannot be written (a full disk...)."""
    name = f"{prefix}{runner.stage_name}.exception.pth"
    reason = err.strerror if isinstance(err, OSError) and err.strerror else (
        f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
    return (f"the run failed, and its exception checkpoint {name} (for post-mortem only) could "
            f"not be written either: {reason}; the checkpoints written before are complete, "
            "and --resume continues from the last of them")


def _cloned(state: Any) -> Any:
    """A copy of a (nested) state dict whose tensors no longer share memory with the model."""
    import torch

    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {key: _cloned(value) for key, value in state.items()}
    return state
