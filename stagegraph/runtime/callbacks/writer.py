"""Checkpoint files written on one background thread while the next epoch trains.

At a checkpoint the training thread copies the state to host memory (`host_copy`: a true copy,
since training changes parameters and optimizer state in place) and hands the rest —
serialising, writing, fsync, hashing, links, the resume checkpoint and its index — to the run's
`CheckpointWriter`. Its one thread runs these jobs in the order they were given, so a resume
checkpoint is written only once the files it names are durable, and a process killed at any
moment leaves the previous complete checkpoint. `CheckpointWriter.wait` joins them: the runner
waits before the next checkpoint (epoch end or mid-epoch), at the end of the run, on an
exception or a signal stop, and before a resume; a job that failed raises `CheckpointWriteError`
there, naming the file and the cause.

Synchronous mode (``Runner(..., sync_checkpoints=True)``, or ``STAGEGRAPH_SYNC_CHECKPOINTS=1``)
runs the same jobs on the training thread as they are given: the files are identical.

A value that one job's data needs from a file an earlier job is still writing — its size and
sha256, which the checkpoint callback's state holds — is given as a `Later` inside `deferred()`
and filled in by `resolved` on the writer thread, where that file is written by then.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from stagegraph.runtime.callbacks.files import Deferred, FileRecord
from stagegraph.runtime.errors import CheckpointWriteError, StagegraphWarning

#: Set (to anything but ``0``/``false``/``no``) to write checkpoints on the training thread.
SYNC_VARIABLE = "STAGEGRAPH_SYNC_CHECKPOINTS"

T = TypeVar("T")


def sync_requested() -> bool:
    """Whether the environment asks for synchronous checkpoint writes (`SYNC_VARIABLE`)."""
    return os.environ.get(SYNC_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


# --- files being written ----------------------------------------------------------------------
class PendingFile:
    """A file a writer job is writing: its `FileRecord` once it is written."""

    def __init__(self, path: Path, future: Future[FileRecord]) -> None:
        self.path = path
        self.future = future

    def done(self) -> bool:
        return self.future.done()

    def record(self) -> FileRecord:
        """The file's record, waiting for its job; `CheckpointWriteError` if the job failed."""
        return self.future.result()

    def __repr__(self) -> str:
        return f"PendingFile({str(self.path)!r})"


def settled(record: FileRecord | PendingFile) -> FileRecord:
    """The record of a file, waiting for it to be written if it is being written."""
    return record.record() if isinstance(record, PendingFile) else record


class Later(Deferred):
    """The size (``bytes``) or ``sha256`` of a `PendingFile`, in data written after it."""

    __slots__ = ("field", "pending")

    def __init__(self, pending: PendingFile, field: str) -> None:
        self.pending, self.field = pending, field

    def value(self) -> Any:
        return getattr(self.pending.record(), self.field)

    def __repr__(self) -> str:
        return f"Later({self.pending.path.name!r}, {self.field!r})"


_DEFERRING: contextvars.ContextVar[bool] = contextvars.ContextVar("stagegraph_deferring",
                                                                  default=False)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside, `record_fields` gives `Later` values for a file still being written."""
    token = _DEFERRING.set(True)
    try:
        yield
    finally:
        _DEFERRING.reset(token)


def record_fields(record: FileRecord | PendingFile) -> tuple[Any, Any]:
    """``(bytes, sha256)`` of a file: `Later` values inside `deferred()` while it is being
    written (the data goes to the writer, which resolves them), else the values themselves —
    ``None`` for a file whose write failed (only an exception checkpoint asks then)."""
    if isinstance(record, PendingFile):
        if not record.done() and _DEFERRING.get():
            return Later(record, "bytes"), Later(record, "sha256")
        futures.wait([record.future])
        if record.future.exception() is not None:
            return None, None
    done = settled(record)
    return done.bytes, done.sha256


def resolved(obj: Any) -> Any:
    """``obj`` with each `Later` replaced by its value (dicts, lists and tuples rebuilt)."""
    if isinstance(obj, Later):
        return obj.value()
    if isinstance(obj, dict):
        return {key: resolved(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [resolved(value) for value in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


# --- the copy in host memory --------------------------------------------------------------------
def host_copy(obj: Any) -> Any:
    """``obj`` (plain data, see `files.plain`) with every tensor copied into host memory.

    Training changes parameters and optimizer state in place, so data written while it goes on
    must not share their memory. Tensors that share a storage share one copy of it, at the same
    offsets and strides, and an object found twice is copied once, so the copy serialises to the
    bytes the original does (on CPU; a GPU tensor becomes a CPU one). Dicts, lists and tuples
    are rebuilt; other leaves are immutable.
    """
    import torch

    storages: dict[int, Any] = {}
    copies: dict[int, Any] = {}  # by id() of the original, alive while this runs

    def copy(value: Any) -> Any:
        if not isinstance(value, (torch.Tensor, dict, list, tuple)):
            return value
        done = copies.get(id(value))
        if done is not None:
            return done
        if isinstance(value, torch.Tensor):
            result: Any = _tensor_copy(value, storages)
        elif isinstance(value, dict):
            result = {key: copy(item) for key, item in value.items()}
        else:
            items = [copy(item) for item in value]
            result = items if isinstance(value, list) else tuple(items)
        copies[id(value)] = result
        return result

    return copy(obj)


def _tensor_copy(tensor: Any, memo: dict[int, Any]) -> Any:
    import torch

    tensor = tensor.detach()
    if (type(tensor) is not torch.Tensor or tensor.layout is not torch.strided
            or tensor.is_quantized or tensor.is_conj() or tensor.is_neg()
            or tensor.device.type == "meta"):
        return tensor.resolve_conj().resolve_neg().clone().cpu()
    storage = tensor.untyped_storage()
    key = storage._cdata  # what torch.save tells storages apart by
    copied = memo.get(key)
    if copied is None:
        copied = memo[key] = storage.clone() if storage.device.type == "cpu" else storage.cpu()
    result = torch.empty(0, dtype=tensor.dtype)
    return result.set_(copied, tensor.storage_offset(), tensor.size(), tensor.stride())


# --- the writer ---------------------------------------------------------------------------------
_LIVE: weakref.WeakSet[CheckpointWriter] = weakref.WeakSet()


class CheckpointWriter:
    """Runs checkpoint jobs one at a time, in order: on a thread of its own (``background``),
    or at once on the caller's. ``waited`` adds up the seconds `wait` spent waiting."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self.waited = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future[Any]] = []
        self._failed: CheckpointWriteError | None = None
        _LIVE.add(self)

    def submit(self, path: Path, job: Callable[[], T]) -> Future[T]:
        """Run ``job``, which writes ``path``, after every job given before it.

        In the background a failure waits for `wait`; synchronously it raises here. Either way
        it is a `CheckpointWriteError` naming ``path``, and the jobs after a failed one are
        skipped until it is reported (a resume checkpoint must not name a file not written).
        """
        if not self.background:
            done: Future[T] = Future()
            done.set_result(_run(path, job))
            return done
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="stagegraph-checkpoints")
        future = self._executor.submit(self._job, path, job)
        self._pending.append(future)
        return future

    def write(self, path: Path, job: Callable[[], FileRecord]) -> PendingFile:
        """`submit` a job that writes the file ``path`` and returns its record."""
        return PendingFile(path, self.submit(path, job))

    def _job(self, path: Path, job: Callable[[], T]) -> T:
        if self._failed is not None:
            raise CheckpointWriteError(f"{path} was not written, since an earlier checkpoint "
                                       f"write failed: {self._failed}", path)
        try:
            return _run(path, job)
        except CheckpointWriteError as err:
            self._failed = self._failed or err
            raise

    def wait(self) -> None:
        """Wait for every job given so far; raise the first failure since the last wait."""
        self._drain()
        error, self._failed = self._failed, None
        if error is not None:
            raise error

    def settle(self) -> CheckpointWriteError | None:
        """`wait` without raising: the failure, if there was one (to report it otherwise)."""
        try:
            self.wait()
        except CheckpointWriteError as err:
            return err
        return None

    def close(self) -> None:
        """Wait for the jobs and stop the thread; a failure not reported yet becomes a warning."""
        error = self.settle()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if error is not None:
            warnings.warn(StagegraphWarning(str(error)), stacklevel=2)

    def _drain(self) -> None:
        if not self._pending:
            return
        start = time.perf_counter()
        futures.wait(self._pending)  # a KeyboardInterrupt here leaves them pending, still known
        self._pending = []
        self.waited += time.perf_counter() - start


def wait_for_writers() -> None:
    """Wait for the jobs of every writer of this process: a resume reads what they write."""
    for writer in list(_LIVE):
        writer._drain()


SYNCHRONOUS = CheckpointWriter(background=False)


def writer_of(runner: Any) -> CheckpointWriter:
    """The runner's writer; a synchronous one for a runner without (a stand-in in a test)."""
    writer = getattr(runner, "checkpoint_writer", None)
    return writer if isinstance(writer, CheckpointWriter) else SYNCHRONOUS


# --- failures -----------------------------------------------------------------------------------
def _run(path: Path, job: Callable[[], T]) -> T:
    try:
        return job()
    except CheckpointWriteError:
        raise
    except Exception as err:
        raise write_error(path, err) from err


_SPACE = "free space on that disk, or choose another --logdir"
_ACCESS = "make the folder writable, or choose another --logdir"
#: What an errno means for a checkpoint being written, and how to fix it.
_REASONS = {errno.ENOSPC: ("the disk is full: no space left on device", _SPACE),
            errno.EROFS: ("the file system is read-only", _ACCESS),
            errno.EACCES: ("permission denied", _ACCESS),
            errno.EPERM: ("operation not permitted", _ACCESS)}
if hasattr(errno, "EDQUOT"):
    _REASONS[errno.EDQUOT] = ("the disk quota is exceeded", _SPACE)


def write_error(path: Path, err: BaseException) -> CheckpointWriteError:
    """A clear `CheckpointWriteError` for ``err``, raised while writing ``path``."""
    fix = "fix that"
    if isinstance(err, OSError) and err.errno is not None:
        name = errno.errorcode.get(err.errno, str(err.errno))
        text, fix = _REASONS.get(err.errno, (err.strerror or str(err), fix))
        reason = f"{text} ({name})"
    else:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return CheckpointWriteError(
        f"could not write checkpoint {path}: {reason}; {fix}, then continue with --resume: the "
        "checkpoints written before it are complete", path)
