"""What a log directory holds between runs, and how a new run replaces it without losing it first.

A logdir holds a **finished** run (the latest resume checkpoint is the one ``finished.json``
names, written when a run returns), an **unfinished** one (resume checkpoints, and no mark naming
the latest: the run was killed, failed or stopped), or no run. A run that starts from the
beginning never deletes what is there: it moves the files a run writes — ``checkpoints/`` and the
folders its callbacks claim (``logs/``, ``predictions/``...) — into
``LOGDIR/.superseded/<time>/`` and deletes them once its own first resume checkpoint is durable.
A finished run is replaced so; an unfinished one only when asked (``overwrite=True``), since it
can still be resumed. ``--resume`` in a logdir whose run was set aside by a run that stopped
before its first checkpoint brings the set-aside run back and continues it.

Resuming from a checkpoint of the logdir older than its latest replaces the newer ones the same
way (`Logdir.supersede`): the run is set aside whole, and what the resumed run keeps of it is put
back as copies, so until the resumed run's first checkpoint is durable the newer state is there,
exactly as it was, for ``--resume`` to bring back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from stagegraph.runtime.callbacks.files import atomic_write, fsync_dir
from stagegraph.runtime.errors import LogdirError, ResumeWarning
from stagegraph.runtime.fastpath_report import FILE as FAST_PATH_FILE
from stagegraph.runtime.resume.store import CheckpointProblem, ResumeStore

SUPERSEDED = ".superseded"
FINISHED = "finished.json"
FINISHED_FORMAT = "stagegraph.finished/1"
#: What every run writes in its logdir, whatever its callbacks: the checkpoint folders, and
#: the batch fast path's decisions per loader.
ALWAYS = frozenset({"checkpoints", FAST_PATH_FILE})


@dataclass(frozen=True)
class RunFound:
    """The run whose resume checkpoints are under ``root`` (a logdir, or a set-aside copy)."""

    root: Path
    latest: str  # the newest checkpoint's file name
    finished: bool
    where: str  # "stage 'train' after epoch 2, global epoch 4"


def run_in(root: Path) -> RunFound | None:
    """The run under ``root``, or ``None`` when it has no resume checkpoint."""
    store = ResumeStore.of_logdir(root)
    files = store.files()
    if not files:
        return None
    latest = files[0][1].name
    return RunFound(root, latest, finished_mark(store.folder) == latest, _where(store, latest))


def set_aside_runs(logdir: Path) -> list[Path]:
    """The folders of ``LOGDIR/.superseded/``, newest first."""
    folder = logdir / SUPERSEDED
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name,
                  reverse=True)


def latest_set_aside(logdir: Path) -> Path | None:
    """The newest set-aside folder that holds a run (resume checkpoints), or ``None``."""
    return next((root for root in set_aside_runs(logdir) if run_in(root) is not None), None)


def set_aside_root(path: Path, logdir: Path) -> Path | None:
    """The set-aside folder (``logdir/.superseded/<time>``) that ``path`` is in, or ``None``."""
    try:
        parts = path.resolve().relative_to((logdir / SUPERSEDED).resolve()).parts
    except ValueError:
        return None
    return logdir / SUPERSEDED / parts[0] if parts else None


def entries_of(plan: Any) -> frozenset[str]:
    """The top-level names in the logdir that ``plan``'s run writes: ``checkpoints`` and the
    folder of every ``files:`` claim of its callbacks (``logs``, ``predictions``...)."""
    names = set(ALWAYS)
    for stage in plan.stages:
        for callback in stage.callbacks:
            for claim in callback.claims:
                if claim.startswith("files:"):
                    parts = PurePosixPath(claim[len("files:"):].replace("\\", "/")).parts
                    if parts and parts[0] not in ("/", ".", "..") and ":" not in parts[0]:
                        names.add(parts[0])
    return frozenset(names)


def mark_finished(store: ResumeStore) -> None:
    """Record that the run of ``store`` finished: ``finished.json`` names its latest checkpoint."""
    files = store.files()
    if not files:
        return
    text = json.dumps({"format": FINISHED_FORMAT, "latest": files[0][1].name,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1)
    atomic_write(store.folder / FINISHED, (text + "\n").encode("utf-8"))


def finished_mark(folder: Path) -> str | None:
    """The checkpoint a ``finished.json`` in ``folder`` names, or ``None``."""
    try:
        data = json.loads((folder / FINISHED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    latest = data.get("latest") if isinstance(data, dict) else None
    return latest if isinstance(latest, str) else None


class Logdir:
    """A run's takeover of its logdir: refuse, set aside or bring back before it writes, and
    delete what it set aside once its first checkpoint is durable (`durable`)."""

    def __init__(self, path: Path, entries: Iterable[str]) -> None:
        self.path = Path(path)
        self.entries = frozenset(entries)
        self._dropped = False

    # --- before the run writes ----------------------------------------------------------------
    def start(self, overwrite: bool, resumed_from: Path | None = None) -> None:
        """A run from the beginning (or resumed from another logdir) takes this one over.

        Raises `LogdirError` when the logdir holds an unfinished run and ``overwrite`` is not
        set; otherwise sets aside the files a run writes, if there are any.
        """
        own = run_in(self.path)
        aside = latest_set_aside(self.path)
        current = own if own is not None else (run_in(aside) if aside is not None else None)
        if current is not None and not current.finished and not overwrite:
            raise LogdirError(self._unfinished(current), _start_hint(self.path, resumed_from))
        moved = self._set_aside(self.entries)
        if current is None:
            return  # what was moved (if anything) is a run that never saved a checkpoint
        kind = "a finished" if current.finished else "an unfinished"
        if current.root == self.path and moved is not None:
            _warn(f"{self._name} held {kind} run ({current.where}); this run replaces it: its "
                  f"files are moved to {moved} and deleted once this run's first checkpoint is "
                  "saved")
        elif not current.finished:
            _warn(f"{self._name} held an unfinished run, set aside in {current.root}; this run "
                  "replaces it: it is deleted once this run's first checkpoint is saved")

    def bring_back(self, root: Path, *paths: Path) -> list[Path]:
        """Move the run set aside in ``root`` back into the logdir; returns where ``paths``
        (files under ``root``) are now.

        What a later run wrote before it stopped (it never saved a checkpoint) is set aside in
        its turn, and deleted with the rest once the resumed run's first checkpoint is durable.
        """
        base = root.resolve()
        moved = [self.path / p.resolve().relative_to(base) if p.resolve().is_relative_to(base)
                 else p for p in paths]
        if not root.is_dir():
            raise LogdirError(f"the run to resume, set aside in {root}, is no longer there (did "
                              "another run use this logdir since?)", "build the runner again")
        names = {p.name for p in root.iterdir()}
        later = self._set_aside(self.entries | names)
        try:
            for name in sorted(names):
                os.replace(root / name, self.path / name)
            fsync_dir(self.path)
            root.rmdir()
        except OSError as err:
            raise LogdirError(f"cannot move the run set aside in {root} back into {self._name}: "
                              f"{err.strerror or err}", "move its folders back by hand, then "
                              "resume") from err
        also = f"; what the later run wrote is in {later}" if later is not None else ""
        _warn(f"brought back the run set aside in {root}: the run that replaced it stopped "
              f"before its first checkpoint{also}")
        return moved

    def supersede(self, checkpoint: Path) -> Path:
        """Resuming from ``checkpoint``, of this logdir but older than its latest: set the run
        aside whole, then put back copies of all but its resume checkpoints (the resumed run
        writes its own); returns where ``checkpoint`` is now.

        Copies, so that the resumed run changes none of the run set aside: hard links in
        ``checkpoints/`` (whose files are replaced, never changed in place), copies of the
        bytes elsewhere (a CSV log is appended to).
        """
        moved = self._set_aside(self.entries)
        assert moved is not None, "the logdir holds the checkpoint"
        try:
            for entry in sorted(p.name for p in moved.iterdir()):
                _copy_back(moved / entry, self.path / entry, links=entry == "checkpoints")
            fsync_dir(self.path)
        except OSError as err:
            raise LogdirError(f"cannot copy the run set aside in {moved} back into {self._name}: "
                              f"{err.strerror or err}", "make room on its disk, or resume into "
                              "another --logdir") from err
        return moved / checkpoint.resolve().relative_to(self.path.resolve())

    # --- after the run's first checkpoint -----------------------------------------------------
    def durable(self) -> None:
        """A checkpoint of this run is complete and durable: delete what was set aside (once)."""
        problem = self.drop_set_aside()
        if problem is not None:
            _warn(problem)

    def drop_set_aside(self) -> str | None:
        """`durable` for the checkpoint writer's thread: what to warn about, if anything, is
        returned (for the training thread to say), not said."""
        if self._dropped:
            return None
        self._dropped = True
        folder = self.path / SUPERSEDED
        if not folder.exists():
            return None
        try:
            shutil.rmtree(folder)
        except OSError as err:  # the run goes on; only disk space is at stake
            return (f"could not delete {folder} ({err.strerror or err}): it holds an earlier "
                    "run that this one replaced; delete it by hand")
        return None

    # --- helpers ------------------------------------------------------------------------------
    @property
    def _name(self) -> str:
        return f"log directory {str(self.path)!r}"

    def _unfinished(self, run: RunFound) -> str:
        where = "" if run.root == self.path else f", set aside in {run.root} by a run that " \
                                                  "stopped before its first checkpoint"
        return (f"{self._name} holds an unfinished run{where}: its latest checkpoint is "
                f"{run.latest} ({run.where}); not starting over")

    def _set_aside(self, names: Iterable[str]) -> Path | None:
        present = [self.path / n for n in sorted(names) if os.path.lexists(self.path / n)]
        if not present:
            return None
        target = _new_folder(self.path / SUPERSEDED)
        try:
            for path in present:
                os.replace(path, target / path.name)
            fsync_dir(target)
            fsync_dir(self.path)
        except OSError as err:
            raise LogdirError(f"cannot set aside {path} in {target}: {err.strerror or err}",
                              "make the log directory writable (each of its folders on the same "
                              "file system), or choose another --logdir") from err
        return target


def _new_folder(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%SZ", time.gmtime())  # sorts as it happened
    for n in range(1000):
        folder = parent / (stamp if n == 0 else f"{stamp}-{n:03d}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise LogdirError(f"cannot create a folder in {parent}: too many runs set aside this "
                      "second", f"delete {parent}")


def _copy_back(source: Path, target: Path, *, links: bool) -> None:
    """``source`` (a file or folder) copied to ``target``, without the resume checkpoints."""
    if source.is_symlink() or not source.is_dir():
        if links:
            try:
                os.link(source, target, follow_symlinks=False)
                return
            except OSError:
                pass
        shutil.copy2(source, target, follow_symlinks=False)
        return
    target.mkdir(exist_ok=True)
    for child in sorted(source.iterdir()):
        if links and child.name == "resume" and child.parent.name == "checkpoints":
            continue
        _copy_back(child, target / child.name, links=links)


def _where(store: ResumeStore, latest: str) -> str:
    try:
        entry = store.index().get(latest)
    except CheckpointProblem:
        entry = None
    if not entry:
        return latest
    return (f"stage {entry.get('stage')!r} after epoch {entry.get('epoch')}, global epoch "
            f"{entry.get('global_epoch')}")


def _start_hint(logdir: Path, resumed_from: Path | None) -> str:
    kept = (f"the old run is then kept in {logdir / SUPERSEDED}/ until the new run's first "
            "checkpoint is saved")
    if resumed_from is not None:
        return (f"continue it with --resume (no path), give the run resumed from {resumed_from} "
                f"another --logdir, or pass --overwrite (overwrite=True) to replace it: {kept}")
    return ("pass --resume to continue it, or --overwrite to start over (resume=True, "
            f"overwrite=True in Python): {kept}")


def _warn(message: str) -> None:
    warnings.warn(ResumeWarning(message), stacklevel=4)
