"""The resume checkpoint folder: atomic files, an index with checksums, the latest complete one.

Layout, in ``logdir/checkpoints/resume/``::

    epoch-000003.pth    the checkpoint after global epoch 3 (the previous one, kept as a fallback)
    epoch-000004.pth    the checkpoint after global epoch 4
    epoch-000005-step-000000123.pth
                        mid-epoch: in global epoch 5, after global batch step 123 (the latest)
    blob-<sha256>.pth   files checkpoints depend on, named by their content (see below)
    latest.json         the index: newest first, each file's size and sha256 and the blobs it uses

A file exists under its final name only once it is complete: it is written to a temporary file
in the same folder, flushed, fsync-ed and renamed (:func:`atomic_write`); the index is rewritten
the same way after it. Finding the latest checkpoint trusts the files, not the index: a kill
between the two leaves a complete file the index does not list yet, which is used without a
checksum. A file whose size or checksum disagrees with the index, or that does not load, or whose
blobs are missing or damaged, is skipped in favour of the one before it.

Checkpoints are written by the run's checkpoint writer (`callbacks.writer`), in the background
while the next epoch trains: `ResumeStore.write_later` does at once what must see the logdir as
it is now and gives the rest as a job. A checkpoint resumed from in its own folder while newer
ones exist sets the logdir's run aside first (see `logdir.Logdir.supersede`), so they are
deleted only once this run's first checkpoint is durable.

A checkpoint may leave its bulk to blobs kept beside it (see `blobs`). Loading uses
``torch.load(..., mmap=True)`` and checksums are computed in chunks, so a checkpoint is never
read whole into memory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stagegraph.runtime.callbacks.files import (
    FileRecord,
    atomic_write,
    link_or_copy,
    save_file,
    sha256_of,
)
from stagegraph.runtime.callbacks.writer import PendingFile, resolved, settled
from stagegraph.runtime.resume.blobs import (
    BLOB,
    CheckpointProblem,
    blob_name,
    complete,
    first_line,
    load,
    references,
)

RESUME_FORMAT = "stagegraph.resume/2"
INDEX_FORMAT = "stagegraph.resume-index/1"
INDEX = "latest.json"
FOLDER = ("checkpoints", "resume")
#: Checkpoints kept: the latest and the one before it, the fallback if the latest is damaged.
KEEP = 2
_NAME = re.compile(r"^epoch-(\d+)(?:-step-(\d+))?\.pth$")
#: Sorts an end-of-epoch checkpoint after every mid-epoch one of the same global epoch.
_END = 1 << 62


def file_name(global_epoch: int, step: int | None = None) -> str:
    """``epoch-000005.pth`` after global epoch 5; ``epoch-000005-step-000000123.pth`` in it,
    after global batch step 123 (a mid-epoch checkpoint)."""
    if step is None:
        return f"epoch-{global_epoch:06d}.pth"
    return f"epoch-{global_epoch:06d}-step-{step:09d}.pth"


def _key(match: re.Match[str]) -> tuple[int, int]:
    step = match.group(2)
    return int(match.group(1)), _END if step is None else int(step)


def logdir_of(checkpoint: Path) -> Path | None:
    """The logdir a resume checkpoint lies in (``LOGDIR/checkpoints/resume/NAME``), if it does."""
    folder = checkpoint.parent
    if (folder.name, folder.parent.name) == tuple(reversed(FOLDER)):
        return folder.parent.parent
    return None


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass
class Search:
    """The result of looking for the latest complete checkpoint."""

    path: Path | None = None
    data: dict[str, Any] | None = None
    skipped: list[Skipped] = field(default_factory=list)
    candidates: int = 0


class ResumeStore:
    """Writes and finds the resume checkpoints of one folder."""

    def __init__(self, folder: str | Path, keep: int = KEEP) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self._trusted: set[str] = set()  # blobs written or verified by this process

    @classmethod
    def of_logdir(cls, logdir: str | Path) -> ResumeStore:
        return cls(Path(logdir).joinpath(*FOLDER))

    # --- writing ------------------------------------------------------------------------------
    def write(self, data: dict[str, Any], global_epoch: int, summary: dict[str, Any],
              step: int | None = None, *, state: FileRecord | PendingFile | None = None,
              files: Mapping[str, FileRecord | PendingFile] | None = None) -> Path:
        """Save ``data`` as the checkpoint of ``global_epoch`` (mid-epoch: at global batch
        ``step``), index it, drop the oldest.

        ``state``: the file holding the rest of the checkpoint's data (``data`` then holds what
        differs); ``files``: the logdir's files it depends on, by path relative to the logdir.
        Both are kept beside it as blobs, before it is written.
        """
        return self.write_later(data, global_epoch, summary, step, state=state, files=files)()

    def write_later(self, data: dict[str, Any], global_epoch: int, summary: dict[str, Any],
                    step: int | None = None, *, state: FileRecord | PendingFile | None = None,
                    files: Mapping[str, FileRecord | PendingFile] | None = None
                    ) -> Callable[[], Path]:
        """`write` in two steps: the files written already are kept as blobs now (a callback
        may replace one before the job runs); the rest is the job returned, for the writer.

        ``data`` may hold `writer.Later` values and ``state``/``files`` `PendingFile` ones,
        whose files earlier jobs write; ``data`` is the job's from now on.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        files = dict(files or {})
        now = {rel: self._keep(record) for rel, record in files.items()
               if isinstance(record, FileRecord)}
        path = self.folder / file_name(global_epoch, step)

        def write() -> Path:
            if state is not None:
                data["state"] = self._keep(settled(state))
            data["files"] = {rel: now[rel] if rel in now else self._keep(settled(record))
                             for rel, record in files.items()}
            record = save_file(resolved(data), path)
            blobs = sorted({ref["file"] for ref in references(data)})
            entry = {"file": path.name, "bytes": record.bytes, "sha256": record.sha256,
                     **summary, "blobs": blobs}
            kept = {p.name for _, p in self.files()[: self.keep]}
            entries = [entry, *(e for e in self._entries() if e["file"] != path.name)]
            self._write_index([e for e in entries if e["file"] in kept])
            self._prune()
            return path

        return write

    def _keep(self, record: FileRecord) -> dict[str, Any]:
        """A blob with the content of ``record`` (linked, or copied), and the reference to it.

        A blob of that name is reused when this process wrote or verified it, or when it is
        the very file of ``record``; any other is replaced, so a damaged blob left by an earlier
        run is never referenced again.
        """
        blob = self.folder / blob_name(record.sha256)
        reuse = blob.is_file() and blob.stat().st_size == record.bytes and (
            blob.name in self._trusted or os.path.samefile(blob, record.path))
        if not reuse:
            link_or_copy(record.path, blob)
        self._trusted.add(blob.name)
        return {"file": blob.name, "bytes": record.bytes, "sha256": record.sha256}

    def trust(self, names: list[str]) -> None:
        """Blobs verified since this process started (by resuming from them): reused as they are."""
        self._trusted.update(names)

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        present = [e for e in entries if (self.folder / e["file"]).exists()]
        text = json.dumps({"format": INDEX_FORMAT, "latest": present[0]["file"] if present
                           else None, "checkpoints": present}, indent=1)
        atomic_write(self.folder / INDEX, (text + "\n").encode("utf-8"))

    def _prune(self) -> None:
        for _, path in self.files()[self.keep:]:
            path.unlink(missing_ok=True)
        self._prune_blobs()

    def _prune_blobs(self) -> None:
        """Remove the blobs no checkpoint present uses (none when that cannot be told)."""
        try:
            index = self.index()
        except CheckpointProblem:
            return
        used: set[str] = set()
        for _, path in self.files():
            blobs = index.get(path.name, {}).get("blobs")
            if blobs is None:  # not indexed yet (or by an older version): read its references
                try:
                    blobs = [ref["file"] for ref in references(load(path))]
                except Exception:
                    return
            used.update(blobs)
        for blob in self.blobs():
            if blob.name not in used:
                blob.unlink(missing_ok=True)

    # --- finding ------------------------------------------------------------------------------
    def files(self) -> list[tuple[int, Path]]:
        """The checkpoint files present and their global epoch, newest (highest global epoch,
        an end-of-epoch one after the mid-epoch ones of its epoch) first."""
        return [(key[0], path) for key, path in self._keyed()]

    def _keyed(self) -> list[tuple[tuple[int, int], Path]]:
        if not self.folder.is_dir():
            return []
        found = [(_key(m), p) for p in self.folder.iterdir()
                 if (m := _NAME.match(p.name)) and p.is_file()]
        return sorted(found, key=lambda item: item[0], reverse=True)

    def blobs(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if BLOB.match(p.name))

    def index(self) -> dict[str, dict[str, Any]]:
        """The index entries by file name; ``{}`` when there is no index. Raises if unreadable."""
        path = self.folder / INDEX
        if not path.exists():
            return {}
        try:
            text = json.loads(path.read_text(encoding="utf-8"))
            return {e["file"]: e for e in text["checkpoints"]}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointProblem(f"the index {path} is unreadable ({err})") from err

    def _entries(self) -> list[dict[str, Any]]:
        try:
            return list(self.index().values())
        except CheckpointProblem:  # rewritten from the files that exist
            return []

    def latest(self) -> Search:
        """The newest checkpoint that is complete and intact, and the ones skipped on the way."""
        search = Search()
        try:
            index = self.index()
        except CheckpointProblem as err:
            search.skipped.append(Skipped(self.folder / INDEX, f"{err}; using the files alone"))
            index = {}
        for _, path in self.files():
            search.candidates += 1
            try:
                data = load_checkpoint(path, index.get(path.name))
            except CheckpointProblem as err:
                search.skipped.append(Skipped(path, str(err)))
                continue
            search.path, search.data = path, data
            break
        return search

    # --- housekeeping -------------------------------------------------------------------------
    def clear(self) -> list[Path]:
        """Remove every checkpoint and the index (a run that starts over); returns the files."""
        removed = [path for _, path in self.files()]
        for path in [*removed, *self.folder.glob("*.corrupt"), *self.blobs()]:
            path.unlink(missing_ok=True)
        (self.folder / INDEX).unlink(missing_ok=True)
        return removed

    def newer_than(self, global_epoch: int, step: int | None = None) -> list[Path]:
        """The checkpoints newer than the one of ``global_epoch`` (at ``step``, for a mid-epoch
        one), newest first."""
        since = (global_epoch, _END if step is None else step)
        return [path for key, path in self._keyed() if key > since]

    def set_aside(self, path: Path) -> Path:
        """Rename a damaged checkpoint to ``NAME.corrupt`` (kept for a post-mortem, never used)."""
        target = path.with_name(path.name + ".corrupt")
        path.replace(target)
        return target


def load_checkpoint(path: Path, entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """A resume checkpoint's data, checked against its index ``entry`` when there is one.

    The file is memory-mapped, not read: its tensors are paged in as they are used. Its blobs
    are verified (size, then sha256 in chunks) and its state merged in, so the result is the
    whole checkpoint whichever way it was stored.
    """
    if entry is not None:
        _verify_entry(path, entry)
    try:
        data = load(path)
    except OSError as err:
        raise CheckpointProblem(f"cannot be read: {err.strerror or err}") from err
    except Exception as err:
        raise CheckpointProblem(f"does not load ({first_line(err)})") from err
    if not isinstance(data, dict) or data.get("format") != RESUME_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointProblem(f"is not a resume checkpoint (format {found!r}, expected "
                                f"{RESUME_FORMAT!r})")
    if not isinstance(data.get("resume"), dict):
        raise CheckpointProblem("has no resume section")
    return complete(path, data, logdir_of(path))


def _verify_entry(path: Path, entry: Mapping[str, Any]) -> None:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise CheckpointProblem(f"cannot be read: {err.strerror or err}") from err
    if size != entry.get("bytes"):
        raise CheckpointProblem(f"is truncated or damaged: {size} bytes, the index says "
                                f"{entry.get('bytes')}")
    try:
        digest = sha256_of(path)
    except OSError as err:
        raise CheckpointProblem(f"cannot be read: {err.strerror or err}") from err
    if digest != entry.get("sha256"):
        raise CheckpointProblem("is damaged: its sha256 checksum does not match the index")


def remove_temporary(folder: Path) -> list[Path]:
    """Delete what an interrupted :func:`atomic_write` left behind (``.NAME.XXXX.tmp``)."""
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
