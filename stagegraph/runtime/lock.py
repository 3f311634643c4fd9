"""The logdir lock: one run at a time writes a log directory (``LOGDIR/.stagegraph.lock``).

The lock is advisory: an exclusive ``fcntl.flock`` on the lock file, held by the run's master
process for the whole run, with the holder's pid, host and start time written in the file so
that a second run can say who holds it. The kernel releases a ``flock`` when its holder dies,
however it dies (SIGKILL included), so a lock file left behind by a dead run is taken over, with
a message naming the run that left it. Where ``flock`` is not available (no ``fcntl``, or a file
system that refuses it), the file's content decides: a holder on this host whose pid is gone is
taken over; any other holder is refused, with a hint to remove the file once it is known stale.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from stagegraph.runtime.errors import LogdirError, StagegraphWarning

try:
    import fcntl
except ImportError:  # Windows: the content of the file decides (see `_take_by_content`)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".stagegraph.lock"
_FLOCK_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class LogdirLock:
    """The lock of ``logdir``; `acquire` takes it or raises `LogdirError`, `release` frees it.

    Also a context manager::

        with LogdirLock(logdir):
            ...  # nothing else holds logdir/.stagegraph.lock
    """

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        self.path = self.logdir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> LogdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock; `LogdirError` naming the holder if another live run has it."""
        assert self._fd is None, "acquired twice"
        try:
            self._fd = self._take()
        except OSError as err:
            raise LogdirError(f"cannot lock log directory {str(self.logdir)!r} "
                              f"({self.path.name}): {err.strerror or err}",
                              "make the log directory writable, or choose another --logdir"
                              ) from err

    def release(self) -> None:
        """Free the lock and remove the file (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Removed while still locked: a run that opened the old file finds it gone and
            # tries again with a new one (see `_take`), so two runs never both hold a lock.
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)

    # --- taking it ----------------------------------------------------------------------------
    def _take(self) -> int:
        for _ in range(10):  # another run may remove the file between our open and our flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if not _flock(fd):
                    return self._take_by_content(fd)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise LogdirError(f"log directory {str(self.logdir)!r} is in use by another "
                                  f"run: {describe(holder)}", _BUSY_HINT) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                previous = _read(fd)
                if previous is not None:
                    _warn_stale(self.path, previous)
                _write_holder(fd)
                return fd
            os.close(fd)
        raise LogdirError(f"cannot lock log directory {str(self.logdir)!r}: its lock file keeps "
                          "changing", _BUSY_HINT)

    def _take_by_content(self, fd: int) -> int:
        """Without ``flock`` the file's content decides: a holder on this host that is gone is
        stale; a holder elsewhere cannot be checked, and is refused."""
        holder = _read(fd)
        if holder is not None and (holder.get("host") != socket.gethostname()
                                   or _alive(int(holder.get("pid", -1)))):
            os.close(fd)
            raise LogdirError(f"log directory {str(self.logdir)!r} is in use by another run: "
                              f"{describe(holder)}", f"{_BUSY_HINT}; if that run is known to be "
                              f"gone (this file system cannot tell), remove {self.path}")
        if holder is not None:
            _warn_stale(self.path, holder)
        _write_holder(fd)
        return fd

def probe(logdir: str | Path) -> None:
    """Raise `LogdirError` if another live run holds ``logdir``'s lock; changes nothing."""
    path = Path(logdir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise LogdirError(f"log directory {str(path.parent)!r} is in use by another run: "
                          f"{describe(_read(fd))}", _BUSY_HINT) from None
    except OSError:
        pass  # no flock here: `LogdirLock.acquire` decides by the file's content
    finally:
        os.close(fd)


def describe(holder: dict[str, Any] | None) -> str:
    """``process 1234 on host 'gpu1', started 2025-01-01T12:00:00+0000 (stagegraph run x.py)``."""
    if not holder:
        return "a process that has not written its details yet"
    text = f"process {holder.get('pid', '?')} on host {holder.get('host', '?')!r}"
    if holder.get("started"):
        text += f", started {holder['started']}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    return text


_BUSY_HINT = ("wait for that run to finish (or stop it), or give this run another --logdir "
              "(logdir=)")


def _write_holder(fd: int) -> None:
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else ""
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "command": command or "python"})
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (text + "\n").encode("utf-8"))
    os.fsync(fd)


def _flock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting; False where ``flock`` is not supported."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as err:
        if err.errno in _FLOCK_UNSUPPORTED:
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
    except OSError:
        return None
    return _parse(data)


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        holder = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (True when it cannot be told)."""
    if pid <= 0 or os.name != "posix":
        return pid > 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


def _warn_stale(path: Path, holder: dict[str, Any] | None) -> None:
    warnings.warn(StagegraphWarning(
        f"took over the lock {path} left by {describe(holder)}, which no longer runs"),
        stacklevel=4)
