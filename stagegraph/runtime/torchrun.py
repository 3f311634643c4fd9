"""``python -m stagegraph.runtime.torchrun ARGS``: torchrun, whose failures end in a summary.

It is ``python -m torch.distributed.run ARGS`` — the same options, the same agent, the same
processes — but when a process fails, torchrun ends by raising ``ChildFailedError`` out of its
own code, and Python prints that traceback and a table of the failures. This prints instead which
ranks failed and how (an exit code and the rank's error, or the signal that killed it), the
likely cause first, and what to do. `stagegraph run EXP --ddp N` starts torchrun this way.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

#: The exit code of a rank that stopped on torchrun's SIGTERM (see `distributed`).
_STOPPED = 128 + int(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with ``argv``; its exit code (1 when a process failed)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except ChildFailedError as err:
        print(failure_summary(err.failures, int(args.max_restarts)), file=sys.stderr, flush=True)
        return 1
    except SignalException as err:
        name = signal.Signals(err.sigval).name
        print(f"stagegraph: torchrun received {name} and stopped its processes",
              file=sys.stderr, flush=True)
        return 128 + int(err.sigval)
    return 0


def failure_summary(failures: Mapping[int, Any], max_restarts: int) -> str:
    """What failed, from torchrun's failures (global rank -> ``ProcessFailure``), and what to do.

    The likely cause comes first: a process killed by a signal other than the SIGTERM with which
    torchrun stops the others, then one that failed on its own, then those that only lost a
    peer or were stopped.
    """
    ranks = sorted(failures, key=lambda rank: (_likelihood(failures[rank]), rank))
    lines = [f"stagegraph: the distributed run failed: {_one(ranks[0], failures[ranks[0]])}"]
    lines += [f"  then {_one(rank, failures[rank])}" for rank in ranks[1:]]
    if max_restarts > 0:
        lines.append(f"  hint: torchrun restarted the processes {max_restarts} time(s), as many "
                     "as --max-restarts allows; with a --logdir, the same command with --resume "
                     "continues from the latest checkpoint")
    else:
        lines.append("  hint: with a --logdir, the same command with --resume continues from the "
                     "latest checkpoint; with --max-restarts N, torchrun restarts the processes "
                     "when one fails, and they resume by themselves")
    return "\n".join(lines)


def _one(rank: int, failure: Any) -> str:
    who = f"rank {rank} (local rank {failure.local_rank}, pid {failure.pid})"
    code, message = int(failure.exitcode), _message(failure)
    if _stopped(code):
        if message:  # it failed, said so, and was stopped while it was ending
            return f"{who} failed: {message}"
        return f"{who} was stopped by SIGTERM (torchrun stops the others once one has failed)"
    if code < 0:
        return f"{who} was killed by {_signal_name(-code)}"
    return f"{who} exited with code {code}" + (f": {message}" if message else "")


def _likelihood(failure: Any) -> int:
    code, message = int(failure.exitcode), _message(failure)
    if code < 0 and not _stopped(code):
        return 0
    if not message:
        return 3 if _stopped(code) else 1
    return 2 if "left the process group" in message else 1


def _stopped(code: int) -> bool:
    return code in (_STOPPED, -int(signal.SIGTERM))


def _message(failure: Any) -> str:
    """The error a stagegraph rank recorded for torchrun (one line), or ``""``."""
    message = getattr(failure, "message", "")
    if isinstance(message, Mapping):
        message = message.get("message", "")
    if not isinstance(message, str) or message.startswith(("Signal ", "To enable traceback")):
        return ""
    return message.splitlines()[0] if message else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


if __name__ == "__main__":
    sys.exit(main())
