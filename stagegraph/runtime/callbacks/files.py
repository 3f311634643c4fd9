"""File helpers for the logging and checkpoint callbacks: atomic writes and checkpoint-safe data.

torch is imported inside the functions that need it, so importing this module does not start it.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import io
import os
import secrets
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: Bytes read at a time when a file is hashed or copied: memory stays flat whatever its size.
CHUNK = 1 << 20


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[IO[bytes]], None]
                 ) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed and ``fsync``-ed, and the
    temporary file is renamed over ``path`` with ``os.replace`` (atomic on POSIX and Windows).
    The file gets the mode a plain ``open(path, "w")`` would: ``0o666`` less the umask.
    ``data`` may be a function that writes into the open file instead (streaming, no copy).
    An `OSError` that names no file (a full disk: ``[Errno 28] No space left on device``) is
    raised again naming ``path``.
    """
    target = Path(path)
    fd, tmp = _temporary(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno is None or err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror, str(target)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def _temporary(target: Path) -> tuple[int, str]:
    """A new file ``.NAME.XXXXXXXX.tmp`` beside ``target``, opened for writing.

    Not `tempfile.mkstemp`, which creates files 0600 whatever the umask: here the mode is
    ``0o666`` and the kernel applies the umask (and a folder's default ACL), so teammates, a
    TensorBoard server or an evaluation job can read what the run writes where the umask lets
    them.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = str(target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, and not needed for safety.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FileRecord:
    """A file as it was written: where, its size and its sha256 (hex)."""

    path: Path
    bytes: int
    sha256: str

    def at(self, path: Path) -> FileRecord:
        """The same content under another name (a hard link or a copy of it)."""
        return FileRecord(path, self.bytes, self.sha256)


class _Hashing:
    """A write-only file that hashes and counts what passes through it.

    An `OSError` of the file is kept in ``error``: torch's zip writer may turn it into a
    ``RuntimeError`` of its own ("unexpected pos ..."), which would hide a full disk.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.sha, self.size = handle, hashlib.sha256(), 0
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        try:
            return self.handle.write(view)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_file(obj: Any, path: Path, *also: Path) -> FileRecord:
    """``torch.save(obj)`` streamed into ``path`` atomically, hashed on the way; ``also`` get the
    same file under their names (hard links, or copies where links are not possible).

    One serialisation however many names: the first is written, the others link to it.
    """
    import torch

    hashing: list[_Hashing] = []

    def write(handle: IO[bytes]) -> None:
        hashing.append(_Hashing(handle))
        try:
            torch.save(obj, hashing[0])  # type: ignore[arg-type]  # write() is all it needs
        except Exception as err:
            if hashing[0].error is None or hashing[0].error is err:
                raise
            raise hashing[0].error from err  # the disk's error, not torch's account of it

    atomic_write(path, write)
    record = FileRecord(path, hashing[0].size, hashing[0].sha.hexdigest())
    for other in also:
        link_or_copy(path, other)
    return record


def link_or_copy(source: Path, target: Path) -> None:
    """Give ``target`` the content of ``source``, atomically: a hard link when the file system
    allows it (no bytes written), else a copy streamed in chunks and fsync-ed.

    Files are never written in place afterwards (every write replaces the name), so a link is
    as good as a copy as long as nobody edits the file in place.
    """
    if target.exists() and os.path.samefile(source, target):
        return
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(source, temporary)
    except OSError:  # no links here (FAT, some network file systems, another device)
        atomic_write(target, lambda handle: _copy(source, handle))
        return
    try:
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def _copy(source: Path, handle: IO[bytes]) -> None:
    with open(source, "rb") as reader:
        while chunk := reader.read(CHUNK):
            handle.write(chunk)


def sha256_of(path: Path) -> str:
    """The sha256 (hex) of a file, read in chunks: never the whole file in memory."""
    sha = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as reader:
        while count := reader.readinto(buffer):
            sha.update(view[:count])
    return sha.hexdigest()


def record_of(path: Path) -> FileRecord:
    """The record of a file as it is now (reads it once, in chunks)."""
    return FileRecord(path, path.stat().st_size, sha256_of(path))


def mismatch(path: Path, size: Any, sha256: Any) -> str | None:
    """What is wrong with ``path`` if it is not the file of that size and sha256 (``"is
    missing"``, ``"is damaged: ..."``), or ``None`` when it is that file.

    The size is checked first, so a file of the wrong size is never read.
    """
    try:
        actual = path.stat().st_size
        if actual != size:
            return f"is damaged: {actual} bytes, expected {size}"
        if sha256_of(path) != sha256:
            return "is damaged: its sha256 checksum does not match"
    except FileNotFoundError:
        return "is missing"
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    return None


def torch_bytes(obj: Any) -> bytes:
    """``obj`` serialised by ``torch.save``, ready for :func:`atomic_write`."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Deferred:
    """A value known only once a file is written (`writer.Later`): `plain` keeps it as it is,
    for the checkpoint writer to put the value in before it serialises the data."""

    __slots__ = ()


@functools.cache
def _leaves() -> tuple[type, ...]:
    import torch

    return (str, int, float, bool, type(None), torch.dtype, torch.device)


def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` made of types ``torch.load(..., weights_only=True)`` accepts.

    Tensors (detached), numbers, strings, ``None``, dtypes and devices are kept; mappings become
    dicts with string or int keys, lists and tuples stay sequences; numpy scalars and arrays,
    enums and paths become their plain values. Anything else becomes its ``repr`` with a warning,
    so a checkpoint always loads.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, enum.Enum):
        return plain(obj.value, where)
    if isinstance(obj, (*_leaves(), Deferred)):
        return obj
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, (str, int)) else str(k)): plain(v, f"{where}.{k}")
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if type(obj).__module__ == "numpy":
        return torch.as_tensor(obj) if getattr(obj, "ndim", 0) else obj.item()
    warnings.warn(f"{where}: {type(obj).__name__} cannot be stored for weights_only loading; "
                  "saved as its repr", stacklevel=2)
    return repr(obj)


def unwrap(model: Any) -> Any:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` wrappers, and inside the
    ``OptimizedModule`` a user's own ``torch.compile(model)`` returns (whose ``state_dict`` keys
    carry an ``_orig_mod.`` prefix that must not reach a checkpoint)."""
    import torch

    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif isinstance(model, torch.nn.Module) and "_orig_mod" in model._modules:
            model = model._modules["_orig_mod"]
        else:
            return model


def state_of(component: Any) -> Any:
    """``state_dict()`` of a component or of each one in a dict of them; ``None`` for ``None``."""
    if component is None:
        return None
    if isinstance(component, Mapping):
        return {name: state_of(value) for name, value in component.items()}
    return unwrap(component).state_dict()


def load_state_into(component: Any, state: Any) -> None:
    """Inverse of :func:`state_of`."""
    if component is None or state is None:
        return
    if isinstance(component, Mapping):
        for name, value in component.items():
            load_state_into(value, state[name])
        return
    unwrap(component).load_state_dict(state)
