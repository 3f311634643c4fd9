"""File helpers for the logging and checkpoint callbacks: atomic writes and checkpoint-safe data."""

from __future__ import annotations

import enum
import io
import os
import secrets
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed and ``fsync``-ed, and the
    temporary file is renamed over ``path`` with ``os.replace`` (atomic on POSIX and Windows).
    The file gets the mode a plain ``open(path, "w")`` would: ``0o666`` less the umask.
    """
    target = Path(path)
    fd, tmp = _temporary(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
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


def torch_bytes(obj: Any) -> bytes:
    """``obj`` serialised by ``torch.save``, ready for :func:`atomic_write`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


_LEAVES = (str, int, float, bool, type(None), torch.dtype, torch.device)


def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` made of types ``torch.load(..., weights_only=True)`` accepts.

    Tensors (detached), numbers, strings, ``None``, dtypes and devices are kept; mappings become
    dicts with string or int keys, lists and tuples stay sequences; numpy scalars and arrays,
    enums and paths become their plain values. Anything else becomes its ``repr`` with a warning,
    so a checkpoint always loads.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, enum.Enum):
        return plain(obj.value, where)
    if isinstance(obj, _LEAVES):
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
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` wrappers."""
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
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
