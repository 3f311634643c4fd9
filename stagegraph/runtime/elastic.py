"""torchrun's elastic restarts: a restarted group continues the run its failed attempt began.

Under ``torchrun --max-restarts N`` the agent stops every rank when one fails and starts them all
again with the same command line. Run as is, the restarted group would be a new run in a logdir
holding an unfinished one, and refuse to start (or, with ``--overwrite``, start over). Instead,
in a run torchrun may restart (``TORCHELASTIC_MAX_RESTARTS`` > 0) that has a logdir:

- the process group is initialised before the run, and **rank 0 decides**: if the logdir's run
  is this job's, the attempt is a restart and resumes from the latest complete checkpoint there,
  verified as ``--resume`` verifies; otherwise it starts as asked (a first attempt behaves as a
  run without restarts). Rank 0 broadcasts its checkpoint, every other rank loads that same
  file, and no rank goes on until all of them have opened theirs;
- rank 0 prints one line saying the group was restarted and where it continues.

Which job wrote the logdir's run is in ``LOGDIR/.stagegraph.elastic.json``, written by rank 0
once an attempt has taken the logdir over: the host, pid and start time of rank 0's torchrun
agent, which stays the same across the restarts of a job and differs from any other job's. It is
the test of "a restart", rather than ``TORCHELASTIC_RESTART_COUNT``, which an agent whose own
ranks were healthy does not increase when it restarts them (pytorch issue #108158). A restart
whose agent is not the one named there — the first attempt failed before it took the logdir
over, or rank 0 moved to another node — does not resume someone else's run: it starts as a new
run would, which refuses an unfinished run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stagegraph.runtime.callbacks.files import atomic_write
from stagegraph.runtime.distributed import Distributed
from stagegraph.runtime.errors import DistributedError, StagegraphRuntimeError
from stagegraph.runtime.resume import open_session
from stagegraph.runtime.resume.session import ResumeSession
from stagegraph.runtime.resume.store import ResumeStore

JOB_FILE = ".stagegraph.elastic.json"
JOB_FORMAT = "stagegraph.elastic/1"


class Elastic:
    """One rank's side of torchrun's restarts (a no-op outside them, or without a logdir)."""

    def __init__(self, distributed: Distributed | None, logdir: Path | None) -> None:
        self.distributed = distributed
        self.logdir = logdir
        env = distributed.env if distributed is not None else None
        self.max_restarts = env.max_restarts if env is not None else 0
        self.active = env is not None and self.max_restarts > 0 and logdir is not None
        #: Whether this attempt continues the run of a group torchrun restarted.
        self.restarted = False
        self._restart = env.restart if env is not None else 0  # this agent's count

    def open_session(self, runner: Any, builder: Any, resume: bool | str | Path, *,
                     allow_plan_change: bool, overwrite: bool) -> ResumeSession:
        """The run's resume session; where restarts may happen, the one rank 0 chose."""
        if not self.active or self.distributed is None:
            return open_session(runner, builder, resume, allow_plan_change=allow_plan_change,
                                overwrite=overwrite)
        self.distributed.start()
        try:
            return self._agree(runner, builder, resume, allow_plan_change, overwrite)
        except BaseException:
            self.distributed.stop()
            raise

    @contextlib.contextmanager
    def stop_group_on_error(self) -> Iterator[None]:
        """The process group `open_session` initialised is destroyed if the run fails before
        it starts (`Distributed.group` destroys it after)."""
        try:
            yield
        except BaseException:
            if self.distributed is not None:
                self.distributed.stop()
            raise

    def mark(self) -> None:
        """Rank 0, once the run has taken its logdir over: this job's run is there."""
        if (not self.active or self.logdir is None or self.distributed is None
                or self.distributed.env.rank != 0 or _job_of(self.logdir) == _this_job()):
            return
        text = json.dumps({"format": JOB_FORMAT, **_this_job(),
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1)
        atomic_write(self.logdir / JOB_FILE, (text + "\n").encode("utf-8"))

    # --- agreeing on where to start -----------------------------------------------------------
    def _agree(self, runner: Any, builder: Any, resume: bool | str | Path,
               allow_plan_change: bool, overwrite: bool) -> ResumeSession:
        assert self.distributed is not None
        distributed, env = self.distributed, self.distributed.env
        problem: str | None = None
        note, ours = "", False
        if env.rank == 0:
            try:
                resume, overwrite, note, ours = self._arguments(resume, overwrite)
                session = open_session(runner, builder, resume,
                                       allow_plan_change=allow_plan_change, overwrite=overwrite)
            except BaseException as err:
                _tell_failure(distributed, err)
                raise
            chosen = session.resumed_from
            distributed.broadcast(("ok", None if chosen is None else str(chosen), ours))
        else:
            status, chosen, ours = distributed.broadcast(None)
            if status != "ok":
                raise DistributedError(f"{env}: rank 0 could not start the run ({chosen}; its "
                                       "error is above)")
            try:  # the checkpoint rank 0 verified, verified again here
                session = open_session(runner, builder, False if chosen is None else Path(chosen),
                                       allow_plan_change=allow_plan_change)
            except StagegraphRuntimeError as err:
                problem = f"rank {env.rank}: {_summary(err)}"
                distributed.gather((problem, self._restart))
                raise
        answers = distributed.gather((problem, self._restart))
        problems = [p for p, _ in answers if p is not None]
        if problems:
            raise DistributedError(f"{env}: not every rank could open the checkpoint rank 0 "
                                   f"resumes from: {'; '.join(problems)}; put the logdir on a "
                                   "file system every node sees")
        restart = max(count for _, count in answers)
        self.restarted = ours or restart > 0
        if env.rank == 0 and self.restarted:
            self._say(session, note, restart, ours)
        return session

    def _arguments(self, resume: bool | str | Path,
                   overwrite: bool) -> tuple[bool | str | Path, bool, str, bool]:
        """Rank 0: resume the logdir's run if this job began it and it has a checkpoint; else
        start as asked. Also why not (``""``: resumed), and whether the run there is this job's
        (then this attempt is a restart, whatever this agent's count says)."""
        assert self.logdir is not None
        job = _job_of(self.logdir)
        if job is None:
            return resume, overwrite, "no run of this job is there", False
        if job != _this_job():
            return resume, overwrite, (f"its run was begun by another torchrun job, whose agent "
                                       f"ran on host {job.get('host')!r} as pid "
                                       f"{job.get('agent')}"), False
        if not ResumeStore.of_logdir(self.logdir).files():
            return resume, overwrite, "this job's run has no checkpoint there yet", True
        return True, False, "", True

    def _say(self, session: ResumeSession, note: str, restart: int, ours: bool) -> None:
        text = "torchrun restarted the group"
        if restart > 0:
            text += f" (restart {restart} of at most {self.max_restarts})"
        if session.resumed_from is not None and not note:
            text += f": resuming from {session.resumed_from}: {session.describe()}"
        elif session.resumed_from is not None:
            text += (f": resuming from {session.resumed_from}, as asked ({note} in "
                     f"{self.logdir}): {session.describe()}")
        elif ours:
            text += f": starting from the beginning ({note} in {self.logdir})"
        else:
            text += f": not resuming the run in {self.logdir} ({note}): starting as a new run"
        print(f"stagegraph: {text}", file=sys.stderr, flush=True)


def _summary(err: BaseException) -> str:
    lines = str(err).splitlines()
    return " ".join(line.strip() for line in lines[:2]) if lines else type(err).__name__


def _tell_failure(distributed: Distributed, err: BaseException) -> None:
    """Rank 0 failed before it chose: tell the other ranks, which wait for its choice."""
    with contextlib.suppress(Exception):  # a peer gone too: rank 0's error is the one to tell
        distributed.broadcast(("failed", _summary(err), False))


def _this_job() -> dict[str, Any]:
    """The torchrun agent that started this process: it outlives every restart of its job."""
    agent = os.getppid()
    return {"run_id": os.environ.get("TORCHELASTIC_RUN_ID", ""), "host": socket.gethostname(),
            "agent": agent, "agent_started": _started(agent)}


def _job_of(logdir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((logdir / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != JOB_FORMAT:
        return None
    return {key: data.get(key) for key in ("run_id", "host", "agent", "agent_started")}


def _started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), so that a later process
    given the same pid is not taken for it; ``None`` where this cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


__all__ = ["JOB_FILE", "Elastic"]
