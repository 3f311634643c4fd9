"""What a resume checkpoint keeps beside it: its state and the logdir's files it depends on.

A checkpoint may leave its bulk to *blobs* in its folder, named by their content
(``blob-<sha256>.pth``) and referenced by name, size and sha256: its ``state`` (the model,
optimizer... as the checkpoint callback serialised them this epoch; the checkpoint then holds
only what differs) and its ``files``, the files of the logdir that a later epoch or stage reads
back (the best weights), by path relative to the logdir. A blob is a hard link to the file it
comes from where the file system allows, else a copy. Blobs are verified before a checkpoint is
used, and the logdir's files put back from them when a resume needs them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from stagegraph.runtime.callbacks.checkpoint import FORMAT as STATE_FORMAT
from stagegraph.runtime.callbacks.files import FileRecord, link_or_copy, mismatch, record_of
from stagegraph.runtime.callbacks.writer import PendingFile

BLOB = re.compile(r"^blob-[0-9a-f]{32}\.pth$")


class CheckpointProblem(Exception):
    """Why one checkpoint file cannot be used."""


def blob_name(sha256: str) -> str:
    return f"blob-{sha256[:32]}.pth"


def load(path: Path) -> Any:
    """``torch.load`` memory-mapped: tensors are paged in as they are used, never read whole."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


# --- reading ----------------------------------------------------------------------------------
def complete(checkpoint: Path, data: dict[str, Any], logdir: Path | None) -> dict[str, Any]:
    """``data`` of ``checkpoint`` with its blobs verified and its state merged in.

    ``logdir``: the logdir the checkpoint lies in, if it does (to tell a damaged blob from a
    damaged file of the logdir it is a hard link of). Raises `CheckpointProblem`.
    """
    for rel, ref in files_of(data).items():
        verified(checkpoint, ref, rel, logdir)
    reference = data.pop("state", None)
    if reference is None:
        return data
    state_path = verified(checkpoint, reference)
    try:
        state = load(state_path)
    except Exception as err:
        raise CheckpointProblem(f"its state {state_path.name} does not load "
                                f"({first_line(err)})") from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointProblem(f"its state {state_path.name} is not a checkpoint")
    callbacks = {**(state.get("callbacks") or {}), **(data.get("callbacks") or {})}
    return {**state, **data, "callbacks": callbacks}


def verified(checkpoint: Path, ref: Any, rel: str | None = None,
             logdir: Path | None = None) -> Path:
    """The blob ``ref`` names beside ``checkpoint``, verified; `CheckpointProblem` if not.

    ``rel``: the logdir's file the blob keeps a copy of (``None``: the checkpoint's state).
    """
    name = ref.get("file") if isinstance(ref, Mapping) else None
    if not isinstance(name, str) or not BLOB.match(name):
        raise CheckpointProblem(f"is damaged: it refers to {name!r}, which is not a blob")
    blob = checkpoint.parent / name
    problem = mismatch(blob, ref.get("bytes"), ref.get("sha256"))
    if problem is None:
        return blob
    if rel is None:
        raise CheckpointProblem(f"needs its state file {name}, which {problem}")
    original = None if logdir is None else logdir / rel
    if original is not None and blob.exists() and original.exists() and \
            original.samefile(blob):  # a hard link: the logdir's file is the damaged one
        raise CheckpointProblem(f"needs {rel}, which {problem}")
    raise CheckpointProblem(f"needs {rel}, and the copy kept with it ({name}) {problem}")


def files_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``files``, their paths checked to stay inside the logdir."""
    files = data.get("files") or {}
    if not isinstance(files, Mapping):
        raise CheckpointProblem("is damaged: its list of files is not a mapping")
    for rel in files:
        pure = PurePosixPath(str(rel))
        if pure.is_absolute() or ".." in pure.parts or "\\" in str(rel) or not pure.parts:
            raise CheckpointProblem(f"names a file outside the logdir ({rel!r})")
    return dict(files)


def references(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The blobs a checkpoint's (raw) data refers to."""
    state = data.get("state")
    return [*([state] if isinstance(state, Mapping) else []),
            *(ref for ref in (data.get("files") or {}).values() if isinstance(ref, Mapping))]


# --- the logdir's files -----------------------------------------------------------------------
class FileRecorder:
    """Records the files callbacks read back later (their ``resume_files()``), by path relative
    to the logdir. A callback gives a `FileRecord` (it knows the sha256 from writing the file),
    a `PendingFile` (the checkpoint writer is writing it), or a path, hashed here again only
    when its size, modification time or inode changed."""

    def __init__(self) -> None:
        self._hashed: dict[Path, tuple[tuple[int, int, int], FileRecord]] = {}

    def files(self, callbacks: Iterable[Any], logdir: Path
              ) -> dict[str, FileRecord | PendingFile]:
        files: dict[str, FileRecord | PendingFile] = {}
        for callback in callbacks:
            method = getattr(callback, "resume_files", None)
            for rel, record in (method() if callable(method) else {}).items():
                files[str(rel)] = (record if isinstance(record, (FileRecord, PendingFile))
                                   else self._record(logdir / rel))
        return files

    def _record(self, path: Path) -> FileRecord:
        stat = path.stat()
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._hashed.get(path)
        if cached is None or cached[0] != key:
            cached = self._hashed[path] = (key, record_of(path))
        return cached[1]


def restore_files(data: Mapping[str, Any], checkpoint: Path, logdir: Path,
                  elsewhere: bool) -> list[str]:
    """Put the files ``data`` depends on into ``logdir``; returns what to warn about.

    Each one found intact stays; any other is replaced by the copy kept with the checkpoint
    (verified when the checkpoint was loaded) — with a warning when it was missing or damaged in
    the logdir the run was in, silently when the run resumes into another logdir
    (``elsewhere``) or the file is one a later epoch wrote (the resumed run replaces that
    timeline).
    """
    said = []
    for rel, ref in (data.get("files") or {}).items():
        target, blob = logdir / rel, checkpoint.parent / ref["file"]
        if target.exists() and target.samefile(blob):
            continue
        problem = mismatch(target, ref["bytes"], ref["sha256"])
        if problem is None:
            continue
        later = _written_after(target, int(data["counters"]["global_epoch"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(blob, target)
        if not later and not (elsewhere and problem == "is missing"):
            said.append(f"{target} {problem}; restored from the copy kept with checkpoint "
                        f"{checkpoint.name}")
    return said


def _written_after(path: Path, global_epoch: int) -> bool:
    """Whether ``path`` is a checkpoint callback's file of an epoch after ``global_epoch``."""
    try:
        data = load(path)
        return bool(data.get("format") == STATE_FORMAT
                    and int(data["counters"]["global_epoch"]) > global_epoch)
    except Exception:
        return False
