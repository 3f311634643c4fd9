"""How a rank of a distributed run tells a failure: its own, a peer's, or torchrun stopping it.

Each says which rank, what happened and what to do, in a line or two and without a traceback:

- a rank whose run failed raises its `RunError` prefixed with the rank (`rank_error`), and
  writes that message — not a traceback — in the error file torchrun reads
  (`record_for_torchrun`), so torchrun's failure table shows it too;
- a rank whose collective failed because a peer is gone says which peer, when the peer ran on
  this host (its pid was shared when the group started, see `Peer`): ``rank 1 (pid 4532) left
  the process group: it failed or was killed``; otherwise that another rank most likely failed;
- a rank that torchrun stops with SIGTERM (it stops them all once one has failed) says so and
  exits with `SIGTERM_EXIT`, rather than dying silently (`SigtermExit`) — unless it is already
  reporting a failure of its own, which SIGTERM must not cut short.

Where a peer was lost or the group stopped, the hint says what comes next: torchrun restarts
the group when ``--max-restarts`` allows it (and it resumes by itself), else ``--resume``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch.distributed as dist

from stagegraph.launch import TIMEOUT_VARIABLE, TorchrunEnv
from stagegraph.runtime.errors import RunError
from stagegraph.runtime.loop import place

#: Exit code of a rank stopped by SIGTERM (torchrun stops the others when one rank fails).
SIGTERM_EXIT = 128 + int(signal.SIGTERM)
#: How long a rank that lost a peer looks for it among this host's processes.
LOOK_SECONDS = 1.0


@dataclass(frozen=True)
class Peer:
    """Another rank of the group: where it runs."""

    rank: int
    host: str
    pid: int


def is_communication_error(err: BaseException | None) -> bool:
    """Whether ``err`` comes from a collective that failed (a peer gone, a timeout)."""
    if err is None:
        return False
    if isinstance(err, dist.DistError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        marker in text for marker in ("gloo", "NCCL", "ProcessGroup", "closed by peer"))


def rank_error(err: RunError, env: TorchrunEnv, timeout: float,
               peers: Sequence[Peer] = ()) -> RunError:
    """``err`` said by rank ``env``; a lost peer is named if it ran on this host."""
    if not is_communication_error(err.__cause__):
        return RunError(f"{env}: {err}", err.where)
    gone = gone_peers(peers)
    if gone:
        who = " and ".join(f"rank {p.rank} (pid {p.pid})" for p in gone)
        message = (f"{env}: run failed at {place(err.where)}: {who} left the process group, "
                   "failed or killed (its own error, if it had time to print one, is above; "
                   "torchrun's summary says how it ended)")
    else:
        message = (f"{env}: {err}\n  hint: a collective operation across the ranks failed: "
                   "another rank most likely failed first (look for its error), or it did not "
                   "reach the same operation within the process-group timeout of "
                   f"{timeout:g} s (set {TIMEOUT_VARIABLE} to change it)")
    return RunError(f"{message}\n  hint: {what_next(env)}", err.where)


def what_next(env: TorchrunEnv) -> str:
    """What becomes of a group that lost a rank, and what to do."""
    if env.max_restarts > 0:
        return ("torchrun restarts every rank while --max-restarts allows, and the run resumes "
                "from its latest checkpoint by itself")
    return ("continue from the latest checkpoint with --resume, or start with torchrun "
            "--max-restarts N (stagegraph run --ddp N --max-restarts M) to have the group "
            "restarted and resumed by itself")


def gone_peers(peers: Sequence[Peer], seconds: float = LOOK_SECONDS) -> list[Peer]:
    """The peers on this host whose process has ended (looked for up to ``seconds``: the
    connection to a dying process closes just before it ends)."""
    here = [p for p in peers if p.host == socket.gethostname() and p.pid != os.getpid()]
    deadline = time.monotonic() + seconds
    while here:
        gone = [p for p in here if not _running(p.pid)]
        if gone or time.monotonic() > deadline:
            return gone
        time.sleep(0.05)
    return []


def record_for_torchrun(error: BaseException) -> None:
    """Write ``error``'s message where torchrun looks for a rank's error (its failure table shows
    it; `stagegraph.runtime.torchrun` prints it), instead of a traceback."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    text = str(error)
    data = {"message": {"message": text, "extraInfo": {"py_callstack": text,
                                                       "timestamp": str(int(time.time()))}}}
    try:
        Path(path).write_text(json.dumps(data), encoding="utf-8")
    except OSError as err:  # a summary is a nicety; never mask the run's own error
        warnings.warn(f"could not write torchrun's error file {path}: {err}", stacklevel=2)


class SigtermExit:
    """SIGTERM, while a rank runs, prints which rank stopped and exits with `SIGTERM_EXIT`.

    Python's default for SIGTERM kills the process silently. Once the rank is reporting its own
    failure (`reporting`), SIGTERM — torchrun stopping every rank — is let pass, so that the
    rank's error is not lost: the rank exits right after saying it. `install` leaves a handler
    the user installed alone, and every thread but the main one (signals are set there only).
    """

    def __init__(self, env: TorchrunEnv) -> None:
        self.env = env
        self.reporting = False
        self._previous: Any = None

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False
        self._previous = signal.signal(signal.SIGTERM, self)
        return True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.reporting:
            return
        print(f"stagegraph: {self.env} stopped by SIGTERM: torchrun stops every rank once one of "
              f"them has failed (its error is above or in torchrun's summary); "
              f"{what_next(self.env)}", file=sys.stderr, flush=True)
        raise SystemExit(SIGTERM_EXIT)


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (not ended, not a zombie waiting for torchrun)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    state = stat.rsplit(")", 1)[1].split()[:1]
    return state not in (["Z"], ["X"])


__all__ = ["SIGTERM_EXIT", "Peer", "SigtermExit", "gone_peers", "is_communication_error",
           "rank_error", "record_for_torchrun", "what_next"]
