"""The torchrun side of distributed runs, without importing torch: the environment and the command.

`torchrun_env` reads what ``torchrun`` (``python -m torch.distributed.run``) sets for each process
it starts — ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``... — so the compiler can be asked for the
right rank's plan before torch is imported. `torchrun_command` is the command behind
``stagegraph run EXP --ddp N``: torchrun in standalone mode (one node, a free port), run through
`stagegraph.runtime.torchrun` so that a failure ends in a summary, not in torchrun's traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: What torchrun's agent sets for each attempt of the group: 0 first, +1 at every restart.
RESTART_VARIABLE = "TORCHELASTIC_RESTART_COUNT"
MAX_RESTARTS_VARIABLE = "TORCHELASTIC_MAX_RESTARTS"
#: Seconds a collective (or the start-up rendezvous) may wait for the other ranks.
TIMEOUT_VARIABLE = "STAGEGRAPH_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0


class LaunchError(ValueError):
    """The distributed environment or launch options are not usable; the message says why."""


@dataclass(frozen=True)
class TorchrunEnv:
    """Where this process sits in a run started by torchrun (or any launcher setting its env)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    #: Which attempt of the group this is (``torchrun --max-restarts N`` restarts every rank
    #: when one fails): 0 for the first, then 1, 2... up to ``max_restarts``.
    restart: int = 0
    max_restarts: int = 0

    @property
    def kind(self) -> str:
        """The plan this process runs: ``master`` on rank 0, ``worker`` on the others."""
        return "master" if self.rank == 0 else "worker"

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def torchrun_env(environ: Mapping[str, str] | None = None) -> TorchrunEnv | None:
    """The torchrun environment of this process, or ``None`` when ``RANK``/``WORLD_SIZE`` are unset.

    >>> torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    TorchrunEnv(rank=1, world_size=2, local_rank=1, local_world_size=1, restart=0, max_restarts=0)
    >>> torchrun_env({}) is None
    True
    """
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    rank, world = _integer(env, "RANK"), _integer(env, "WORLD_SIZE")
    local_rank = _integer(env, "LOCAL_RANK", rank)
    local_world = _integer(env, "LOCAL_WORLD_SIZE", 1)
    restart = _integer(env, RESTART_VARIABLE, 0)
    max_restarts = _integer(env, MAX_RESTARTS_VARIABLE, 0)
    if world < 1 or not 0 <= rank < world:
        raise LaunchError(f"RANK={rank} and WORLD_SIZE={world} do not describe a rank of the run "
                          "(0 <= RANK < WORLD_SIZE); start the processes with torchrun, which "
                          "sets both")
    return TorchrunEnv(rank, world, local_rank, local_world, max(restart, 0),
                       max(max_restarts, 0))


def _integer(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(str(value))
    except ValueError:
        raise LaunchError(f"environment variable {name}={value!r} is not an integer; it is set "
                          "by torchrun for each process it starts") from None


def timeout_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The process-group timeout: ``STAGEGRAPH_DIST_TIMEOUT`` seconds, else 600."""
    env = os.environ if environ is None else environ
    value = env.get(TIMEOUT_VARIABLE)
    if value is None or value == "":
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise LaunchError(f"{TIMEOUT_VARIABLE}={value!r} is not a positive number of seconds "
                          f"(default {DEFAULT_TIMEOUT:g})")
    return seconds


def torchrun_command(nproc: int, stagegraph_args: Sequence[str], *, max_restarts: int = 0,
                     python: str | None = None) -> list[str]:
    """``python -m stagegraph.runtime.torchrun --standalone --nproc_per_node N -m stagegraph ARGS``.

    That is torchrun (``python -m torch.distributed.run``) with the same options, ending in a
    summary of what failed rather than torchrun's traceback. Standalone mode runs one node and
    lets the rendezvous pick a free port, so several runs can share a machine. ``max_restarts``
    is torchrun's ``--max-restarts``: how many times it restarts every rank when one fails (each
    restart resumes from the latest checkpoint).

    >>> torchrun_command(2, ["run", "exp.py"], python="python")
    ['python', '-m', 'stagegraph.runtime.torchrun', '--standalone', '--nproc_per_node', '2', \
'-m', 'stagegraph', 'run', 'exp.py']
    """
    if nproc < 1:
        raise LaunchError(f"--ddp {nproc}: the number of processes must be at least 1")
    if max_restarts < 0:
        raise LaunchError(f"--max-restarts {max_restarts}: give a number of restarts >= 0")
    restarts = ["--max-restarts", str(max_restarts)] if max_restarts else []
    return [python or sys.executable, "-m", "stagegraph.runtime.torchrun", "--standalone",
            "--nproc_per_node", str(nproc), *restarts, "-m", "stagegraph", *stagegraph_args]


def rank_arguments(args: argparse.Namespace) -> list[str]:
    """The ``stagegraph run`` arguments each rank of ``--ddp N`` gets: the same, minus ``--ddp``."""
    argv = ["run", args.exp]
    for flag, value in (("--device", args.device), ("--logdir", args.logdir),
                        ("--dist-timeout", args.dist_timeout),
                        ("--checkpoint-every", getattr(args, "checkpoint_every", None))):
        if value is not None:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for override in getattr(args, "overrides", None) or ():
        argv += ["--set", override]
    resume = getattr(args, "resume", False)
    if resume is not False:  # every rank resumes from the same checkpoint
        argv += ["--resume"] if resume is True else ["--resume", str(resume)]
    switches = (("--check", args.check), ("--quiet", args.quiet), ("--traceback", args.traceback),
                ("--allow-plan-change", getattr(args, "allow_plan_change", False)),
                ("--overwrite", getattr(args, "overwrite", False)))
    return argv + [flag for flag, on in switches if on]


def run_torchrun(command: Sequence[str]) -> int:
    """Run ``command`` (torchrun) in the foreground and return its exit code.

    On Ctrl-C in a terminal torchrun receives the interrupt too and stops its workers; it gets a
    few seconds for that. If it is still running (only this process was interrupted), it is sent
    SIGTERM, which makes it stop its workers, and is killed if that takes longer than 30 s.
    """
    print(f"stagegraph: starting {shlex.join(command)}", file=sys.stderr, flush=True)
    process = subprocess.Popen(list(command))
    try:
        return process.wait()
    except KeyboardInterrupt:
        _stop(process)
        raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    for grace, stop in ((5.0, process.terminate), (30.0, process.kill)):
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            stop()
    process.wait()
