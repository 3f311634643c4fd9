"""The runner's resume hooks: write a checkpoint after each epoch, continue from one.

`open_session` runs when the runner is built, before any work: it finds the checkpoint to resume
from, skips damaged ones with a warning, and refuses a plan that changed since the checkpoint
(``SF601``) unless told to allow it. The runner then calls, in this order:

- `ResumeSession.prepare` when the run starts, holding the logdir lock (tidies the checkpoint
  folder; a run from the beginning refuses an unfinished run or sets the old one aside, see
  `logdir.py`; puts back the files the checkpoint depends on, verified, into the logdir);
- `ResumeSession.first_stage`: the stages before it are done and are skipped;
- `ResumeSession.enter_stage` after the stage's components are built (restores counters and
  callback state, which ``on_stage_start`` keeps);
- `ResumeSession.stage_started` after ``on_stage_start`` (restores the components, loaders,
  random generators and last metrics) — it returns the number of epochs left;
- `ResumeSession.wait` before the epoch-end hooks, and wherever the run needs the checkpoints
  on disk (the end, an exception, a signal stop): waits for the writer, raising
  `CheckpointWriteError` for a write that failed;
- `ResumeSession.epoch_end` after every epoch (hands the checkpoint to the writer, whose job
  deletes what was set aside once the checkpoint is durable);
- `ResumeSession.write_position` at a batch boundary (a mid-epoch checkpoint, see `midepoch`);
- `ResumeSession.finish` when the run returns (marks the logdir's run finished).

Checkpoints are written by the run's `CheckpointWriter` (`callbacks.writer`): the state is
copied to host memory here, on the training thread, and written on the writer's thread.

A checkpoint written mid-epoch holds a ``position``; resuming from it continues its epoch
(`ResumeSession.position`, which `midepoch.MidEpoch` consumes).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stagegraph.compiler.diagnostics import Diagnostic, Location, Severity
from stagegraph.compiler.diff import config_changes, plan_changes
from stagegraph.runtime.binding import StageBinding
from stagegraph.runtime.callbacks.files import FileRecord, plain, unwrap
from stagegraph.runtime.callbacks.writer import (
    CheckpointWriter,
    PendingFile,
    deferred,
    host_copy,
    wait_for_writers,
)
from stagegraph.runtime.errors import CheckpointWriteError, ResumeError, ResumeWarning
from stagegraph.runtime.resume.blobs import FileRecorder, restore_files
from stagegraph.runtime.resume.logdir import (
    Logdir,
    entries_of,
    latest_set_aside,
    mark_finished,
    set_aside_root,
)
from stagegraph.runtime.resume.snapshot import (
    restore_callbacks,
    restore_components,
    serialised_state,
    snapshot,
)
from stagegraph.runtime.resume.store import (
    INDEX,
    CheckpointProblem,
    ResumeStore,
    Search,
    Skipped,
    file_name,
    load_checkpoint,
    remove_temporary,
)

ALLOW_HINT = ("resume with the experiment as it was, or pass --allow-plan-change "
              "(Runner(..., allow_plan_change=True)) to resume anyway")


class ResumeSession:
    """Checkpoints a run after each epoch and, when resuming, restores one once."""

    def __init__(self, store: ResumeStore | None, builder: Any, check: bool,
                 search: Search | None = None, logdir: Logdir | None = None,
                 overwrite: bool = False, writer: CheckpointWriter | None = None) -> None:
        self.store = store  # None: nothing is written (no logdir, or not the master rank)
        self.logdir = logdir  # set with the store
        self.overwrite = overwrite
        self.writer = writer if writer is not None else CheckpointWriter(background=False)
        self._said: list[str] = []  # what the writer's jobs found to warn about
        self.builder = builder
        self.check = check
        self.search = search if search is not None and search.data is not None else None
        self.first_stage = 0
        #: The last checkpoint this run wrote (``None``: none yet).
        self.last_written: Path | None = None
        self._bindings: tuple[StageBinding, ...] = ()
        self._restore_callbacks = self._restore_components = self.search is not None
        self._recorder = FileRecorder()

    @property
    def resumed_from(self) -> Path | None:
        return self.search.path if self.search is not None else None

    @property
    def data(self) -> dict[str, Any]:
        assert self.search is not None and self.search.data is not None
        return self.search.data

    @property
    def restores_stage(self) -> bool:
        """Whether the stage being built is the one resumed: its components' state, the
        optimizer's included, comes from the checkpoint (loaded after ``on_stage_start``)."""
        return self._restore_components

    @property
    def position(self) -> dict[str, Any] | None:
        """Where in its epoch the checkpoint resumed from was written (``None``: at its end)."""
        if self.search is None:
            return None
        position = self.data["resume"].get("position")
        return position if isinstance(position, dict) else None

    def describe(self) -> str:
        """Where the run continues, ``stage 'train' after epoch 2, global epoch 4``, or ``''``."""
        if self.search is None:
            return ""
        resume, counters = self.data["resume"], self.data["counters"]
        position = self.position
        if position is not None:
            return (f"stage {resume['stage']!r} in epoch {resume['epoch']}, loader "
                    f"{position['loader']!r} after batch {position['loader_batch_step']}, "
                    f"global epoch {counters['global_epoch']}")
        done = " (the stage had finished)" if resume["stage_done"] else ""
        return (f"stage {resume['stage']!r} after epoch {resume['epoch']}{done}, global epoch "
                f"{counters['global_epoch']}")

    # --- runner hooks -------------------------------------------------------------------------
    def prepare(self, bindings: Sequence[StageBinding]) -> None:
        self._bindings = tuple(bindings)
        if self.search is not None:
            stage = self.data["resume"]["stage"]
            self.first_stage = next(i for i, b in enumerate(bindings) if b.plan.name == stage)
        if self.store is not None:
            self._tidy(self.store)
            if self.search is not None:
                self._restore_files(self.store)

    def enter_stage(self, runner: Any) -> None:
        if not self._restore_callbacks:
            return
        self._restore_callbacks = False
        restore_callbacks(runner, self.data, carried=self._carried(runner))
        if self.position is not None:  # the saved epoch is not done: the runner enters it again
            runner.epoch -= 1
            runner.global_epoch -= 1

    def stage_started(self, runner: Any) -> int:
        """Epochs left in the stage (all of them unless it is the stage resumed)."""
        if not self._restore_components:
            return int(runner.num_epochs) - int(runner.epoch)
        self._restore_components = False
        # Built only when saved: otherwise a later stage builds it, seeded as it first was.
        saved_shared = self.data["resume"].get("shared_model") is not None
        restore_components(runner, self.data,
                           shared_model=self._shared_model(runner, saved_shared))
        for key in ("model", "optimizer", "scheduler", "scaler"):  # the memory-mapped bulk
            self.data.pop(key, None)
        if self.data["resume"]["stage_done"]:
            return 0
        return max(int(runner.num_epochs) - int(runner.epoch), 0)

    def epoch_end(self, runner: Any) -> None:
        """Hand the epoch's checkpoint to the writer (after `wait`, before the epoch-end hooks)."""
        if self.store is None:
            return
        binding = next(b for b in self._bindings if b.plan.name == runner.stage_name)
        shared = serialised_state(binding, runner.global_epoch)
        carried = self._carried(runner)
        with deferred():  # the checkpoint callback's file may still be being written
            data = host_copy(snapshot(
                runner, shared_model=self._shared_model(runner, False), carried=carried,
                check=self.check, only_callbacks=None if shared is None else shared[1]))
            files = self._files(runner, carried)
        summary = {"stage": runner.stage_name, "epoch": runner.epoch,
                   "global_epoch": runner.global_epoch}
        self._write(data, runner.global_epoch, summary, None,
                    state=None if shared is None else shared[0], files=files)

    def _files(self, runner: Any, carried: dict[str, Any]
               ) -> dict[str, FileRecord | PendingFile]:
        """The logdir files this checkpoint depends on (the best weights...), to keep as blobs."""
        return self._recorder.files([*(runner.callbacks or {}).values(), *carried.values()],
                                    Path(runner.logdir))

    def write_position(self, runner: Any, position: dict[str, Any]) -> Path | None:
        """A mid-epoch checkpoint at the batch boundary ``position`` describes."""
        if self.store is None:
            return None
        self.wait()  # the checkpoint before this one first
        carried = self._carried(runner)
        with deferred():
            data = snapshot(runner, shared_model=self._shared_model(runner, False),
                            carried=carried, check=self.check)
            data["resume"]["stage_done"] = False
            data["resume"]["position"] = plain(position, "mid-epoch resume checkpoint")
            data = host_copy(data)
            files = self._files(runner, carried)
        summary = {"stage": runner.stage_name, "epoch": runner.epoch,
                   "global_epoch": runner.global_epoch, "loader": runner.loader_name,
                   "loader_batch_step": runner.loader_batch_step,
                   "global_batch_step": runner.global_batch_step}
        return self._write(data, runner.global_epoch, summary, runner.global_batch_step,
                           files=files)

    def _write(self, data: dict[str, Any], global_epoch: int, summary: dict[str, Any],
               step: int | None, *, files: dict[str, FileRecord | PendingFile],
               state: FileRecord | PendingFile | None = None) -> Path:
        assert self.store is not None
        write = self.store.write_later(data, global_epoch, summary, step, state=state,
                                       files=files)
        logdir = self.logdir

        def job() -> Path:
            path = write()
            if logdir is not None:  # the checkpoint is durable: the run set aside can go
                problem = logdir.drop_set_aside()
                if problem is not None:
                    self._said.append(problem)
            return path

        path = self.store.folder / file_name(global_epoch, step)
        self.writer.submit(path, job)
        self.last_written = path
        if not self.writer.background:
            self.wait()
        return path

    def wait(self) -> None:
        """Wait for the checkpoints being written; `CheckpointWriteError` if one failed."""
        try:
            self.writer.wait()
        finally:
            said, self._said = self._said, []
            for message in said:
                _warn(message)

    def settle(self) -> CheckpointWriteError | None:
        """`wait`, giving a failure rather than raising it (the run is failing already)."""
        try:
            self.wait()
        except CheckpointWriteError as err:
            return err
        return None

    def finish(self) -> None:
        """The run returned: mark the logdir's run finished, drop what it replaced."""
        self.wait()
        if self.store is None or self.logdir is None:
            return
        mark_finished(self.store)
        self.logdir.durable()

    def _restore_files(self, store: ResumeStore) -> None:
        """The files the checkpoint depends on, put back into this run's logdir, verified."""
        assert self.search is not None and self.search.path is not None
        elsewhere = self.search.path.parent.resolve() != store.folder.resolve()
        if not elsewhere:
            store.trust([ref["file"] for ref in (self.data.get("files") or {}).values()])
        for message in restore_files(self.data, self.search.path, store.folder.parent.parent,
                                     elsewhere):
            _warn(message)

    # --- helpers ------------------------------------------------------------------------------
    def _shared_model(self, runner: Any, build: bool) -> Any:
        shared = self.builder.shared_model(build=build)
        return None if shared is None or shared is unwrap(runner.model) else shared

    def _carried(self, runner: Any) -> dict[str, Any]:
        """Experiment-scoped callbacks of earlier stages that skip this one and come back later."""
        here = next((i for i, b in enumerate(self._bindings) if b.plan.name == runner.stage_name),
                    0)
        started = {b.plan.name for b in self._bindings[: here + 1]}
        present = {id(cb) for cb in (runner.callbacks or {}).values()}
        carried: dict[str, Any] = {}
        for binding in self._bindings[here + 1:]:
            for cb in binding.plan.callbacks:
                instance = binding.callbacks[cb.name]
                if (cb.origin == "migrated" and cb.declared_in in started
                        and id(instance) not in present):
                    carried.setdefault(f"{cb.declared_in}/{cb.name}", instance)
        return carried

    def _tidy(self, store: ResumeStore) -> None:
        assert self.logdir is not None, "set with the store"
        for folder in (store.folder.parent, store.folder):
            remove_temporary(folder)
        if self.search is None or self.search.path is None:
            self.logdir.start(self.overwrite)  # refuses an unfinished run, or sets it aside
            return
        aside = set_aside_root(self.search.path, self.logdir.path)
        if aside is not None:  # a run set aside by one that stopped before its first checkpoint
            path, *others = self.logdir.bring_back(
                aside, self.search.path, *(s.path for s in self.search.skipped))
            self.search.path = path
            self.search.skipped = [Skipped(moved, s.reason)
                                   for moved, s in zip(others, self.search.skipped, strict=True)]
        if self.search.path.parent.resolve() != store.folder.resolve():
            # Resumed from elsewhere: this logdir's own run is replaced, as by a fresh run.
            self.logdir.start(self.overwrite, resumed_from=self.search.path)
            return
        for skipped in self.search.skipped:
            if skipped.path.name != INDEX and skipped.path.exists():
                store.set_aside(skipped.path)
        counters, position = self.data["counters"], self.position
        newer = store.newer_than(int(counters["global_epoch"]), None if position is None
                                 else int(counters["global_batch_step"]))
        if newer:  # kept, as they are, until this run's first checkpoint is durable
            path = self.search.path
            self.search.path = self.logdir.supersede(path)
            _warn(f"resuming from {path.name}, older than the latest checkpoint of "
                  f"{str(self.logdir.path)!r} ({newer[0].name}): that run is set aside in "
                  f"{self.search.path.parents[2]} and deleted once this run saves its first "
                  f"checkpoint; until then --resume (without a path) goes back to it")


def open_session(runner: Any, builder: Any, resume: bool | str | Path | None = False, *,
                 allow_plan_change: bool = False, overwrite: bool = False) -> ResumeSession:
    """The session for ``runner``; `ResumeError` if it was asked to resume and cannot.

    ``overwrite`` lets a run from the beginning (or resumed from another logdir) replace an
    unfinished run in its logdir; ``resume=True`` (continue the logdir's run) excludes it.
    """
    if overwrite and resume is True:
        raise ValueError("overwrite=True (--overwrite) starts the logdir's run over and "
                         "resume=True (--resume) continues it: pass one of them")
    master = runner.logdir is not None and runner.is_distributed_master
    store = ResumeStore.of_logdir(runner.logdir) if master else None
    logdir = Logdir(runner.logdir, entries_of(runner.plan)) if master else None
    writer = getattr(runner, "checkpoint_writer", None)
    if resume is False or resume is None:
        return ResumeSession(store, builder, runner.check, logdir=logdir, overwrite=overwrite,
                             writer=writer)
    wait_for_writers()  # a run of this process may still be writing what is read here
    search = _search(resume, runner.logdir)
    if search.data is None:
        return ResumeSession(store, builder, runner.check, logdir=logdir, overwrite=overwrite,
                             writer=writer)
    _check_plan(runner, search, allow_plan_change)
    return ResumeSession(store, builder, runner.check, search, logdir=logdir,
                         overwrite=overwrite, writer=writer)


def _search(resume: bool | str | Path, logdir: Path | None) -> Search:
    if isinstance(resume, bool):  # True: False never gets here
        if logdir is None:
            raise _cannot("resume=True looks for checkpoints in the logdir, and this run has "
                          "none", "pass logdir= (--logdir DIR), or resume='path/to/checkpoint'")
        store = ResumeStore.of_logdir(logdir)
        aside = None if store.files() else latest_set_aside(logdir)
        if aside is not None:  # set aside by a run that stopped before its first checkpoint:
            search = ResumeStore.of_logdir(aside).latest()  # it is the logdir's latest run
            if search.candidates:  # (none: another rank moved it back meanwhile)
                return _latest(ResumeStore.of_logdir(aside), fresh_if_empty=True, search=search)
        return _latest(store, fresh_if_empty=True)
    path = Path(resume)
    if path.is_file():
        return _exact(path)
    if not path.is_dir():
        raise _cannot(f"{str(path)!r} does not exist", "pass the logdir of the run to resume, "
                      "or one of its checkpoints/resume/epoch-NNNNNN.pth files")
    for folder in (path / "checkpoints" / "resume", path / "resume", path):
        if ResumeStore(folder).files():
            return _latest(ResumeStore(folder), fresh_if_empty=False)
    raise _cannot(f"{str(path)!r} holds no resume checkpoint (checkpoints/resume/"
                  "epoch-NNNNNN.pth)", "pass the logdir of a run that finished at least one "
                  "epoch with a logdir, or start over without --resume")


def _latest(store: ResumeStore, fresh_if_empty: bool, search: Search | None = None) -> Search:
    search = store.latest() if search is None else search
    if search.data is None and search.candidates == 0 and fresh_if_empty:
        _warn(f"there is no checkpoint to resume from in {store.folder}: starting from the "
              "beginning", code="SF604")
        return search
    if search.data is None:
        reasons = "; ".join(f"{s.path.name} {s.reason}" for s in search.skipped)
        raise _cannot(f"none of the {search.candidates} checkpoint(s) in {store.folder} is "
                      f"usable: {reasons}", "resume from a copy of the run you trust, or start "
                      "over without --resume")
    for skipped in search.skipped:
        if skipped.path.name == INDEX:
            _warn(skipped.reason, code="SF602")
        else:
            _warn(f"skipped checkpoint {skipped.path}: it {skipped.reason}; falling back to the "
                  "one before it", code="SF602")
    return search


def _exact(path: Path) -> Search:
    try:
        entry = ResumeStore(path.parent).index().get(path.name)
    except CheckpointProblem:
        entry = None
    try:
        data = load_checkpoint(path, entry)
    except CheckpointProblem as err:
        raise _cannot(f"checkpoint {str(path)!r} {err}", "pass an intact checkpoints/resume/"
                      "epoch-NNNNNN.pth file, or the run's logdir to use its latest intact one"
                      ) from err
    return Search(path=path, data=data, candidates=1)


def _check_plan(runner: Any, search: Search, allow: bool) -> None:
    """Refuse (or, when allowed, name) every change since the checkpoint; the stage must exist."""
    assert search.data is not None
    resume = search.data["resume"]
    changes = []
    if search.data.get("plan_hash") != runner.plan.hash:
        saved = json.loads(resume["plan"])
        changes = [("SF601", c.location, c.text) for c in
                   plan_changes(saved, runner.plan.model_dump(mode="json"))]
    if bool(resume.get("check")) != bool(runner.check):
        changes.append(("SF601", Location(param="check"),
                        f"check run was {bool(resume.get('check'))}, is {bool(runner.check)}"))
    config = getattr(runner.experiment, "config", None)
    if resume.get("config") is not None and config is not None:
        named = {where for _, where, _ in changes}  # a stage parameter's change is in both
        changes += [("SF815", c.location, f"config {c.text}")
                    for c in config_changes(resume["config"], config) if c.location not in named]
    if changes and not allow:
        what = "plan" if all(code == "SF601" for code, _, _ in changes) else "experiment"
        raise ResumeError(f"the {what} changed since checkpoint {search.path} was written "
                          f"({len(changes)} change(s)); not resuming:",
                          [_diagnostic(code, Severity.error, where, text, ALLOW_HINT)
                           for code, where, text in changes])
    for code, where, text in changes:
        _warn(f"{text} (ignored: resuming anyway)", code=code, location=where)
    if resume["stage"] not in {s.name for s in runner.plan.stages}:
        raise _cannot(f"checkpoint {search.path} was written in stage {resume['stage']!r}, "
                      "which the plan no longer has", "restore the stage, or start over "
                      "without --resume")


def _diagnostic(code: str, severity: Severity, location: Location, message: str,
                hint: str = "") -> Diagnostic:
    return Diagnostic(code=code, severity=severity, location=location, message=message,
                      hint=hint)


def _cannot(message: str, hint: str) -> ResumeError:
    return ResumeError("cannot resume:", [_diagnostic("SF603", Severity.error, Location(),
                                                      message, hint)])


def _warn(message: str, code: str | None = None, location: Location | None = None) -> None:
    diagnostic = (None if code is None else
                  _diagnostic(code, Severity.warning, location or Location(), message))
    warnings.warn(ResumeWarning(str(diagnostic) if diagnostic else message, diagnostic),
                  stacklevel=3)
