"""`python -m stagegraph.runtime.torchrun`: torchrun's failures told in a few lines, the likely
cause first. (The real launch is in test_rank_failure.py.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stagegraph.runtime.torchrun import failure_summary


def failure(local_rank: int, pid: int, exitcode: int, message: Any = "") -> SimpleNamespace:
    return SimpleNamespace(local_rank=local_rank, pid=pid, exitcode=exitcode, message=message)


def recorded(text: str) -> dict[str, Any]:
    """What a stagegraph rank writes in its error file (see `rank_failure`)."""
    return {"message": text, "extraInfo": {"py_callstack": text, "timestamp": "1"}}


def test_the_killed_rank_comes_first_then_the_others() -> None:
    text = failure_summary({
        0: failure(0, 100, 1, recorded("rank 0 of 3: run failed at stage 'train': rank 2 (pid "
                                       "102) left the process group, failed or killed\n  hint: x")),
        1: failure(1, 101, -15, "Signal 15 (SIGTERM) received by PID 101"),
        2: failure(2, 102, -9, "Signal 9 (SIGKILL) received by PID 102"),
    }, max_restarts=0)
    assert text.splitlines() == [
        "stagegraph: the distributed run failed: rank 2 (local rank 2, pid 102) was killed by "
        "SIGKILL",
        "  then rank 0 (local rank 0, pid 100) exited with code 1: rank 0 of 3: run failed at "
        "stage 'train': rank 2 (pid 102) left the process group, failed or killed",
        "  then rank 1 (local rank 1, pid 101) was stopped by SIGTERM (torchrun stops the others "
        "once one has failed)",
        "  hint: with a --logdir, the same command with --resume continues from the latest "
        "checkpoint; with --max-restarts N, torchrun restarts the processes when one fails, and "
        "they resume by themselves"]


def test_a_rank_stopped_after_it_said_its_error_is_told_by_its_error() -> None:
    lost = recorded("rank 0 of 2: run failed at stage 'train': rank 1 (pid 9) left the process "
                    "group, failed or killed")
    text = failure_summary({0: failure(0, 8, -15, lost), 1: failure(1, 9, -9)}, 0)
    assert text.splitlines()[:2] == [
        "stagegraph: the distributed run failed: rank 1 (local rank 1, pid 9) was killed by "
        "SIGKILL",
        "  then rank 0 (local rank 0, pid 8) failed: rank 0 of 2: run failed at stage 'train': "
        "rank 1 (pid 9) left the process group, failed or killed"]


def test_a_rank_that_failed_on_its_own_comes_before_one_that_lost_it() -> None:
    text = failure_summary({
        0: failure(0, 100, 143),
        1: failure(1, 101, 1, recorded("rank 1 of 2: run failed: ValueError: boom")),
    }, max_restarts=2)
    assert text.splitlines()[:2] == [
        "stagegraph: the distributed run failed: rank 1 (local rank 1, pid 101) exited with "
        "code 1: rank 1 of 2: run failed: ValueError: boom",
        "  then rank 0 (local rank 0, pid 100) was stopped by SIGTERM (torchrun stops the others "
        "once one has failed)"]
    assert "torchrun restarted the processes 2 time(s), as many as --max-restarts allows" in text
    plain = failure_summary({0: failure(0, 7, 2, "To enable traceback see: https://...")}, 0)
    assert plain.splitlines()[0].endswith("rank 0 (local rank 0, pid 7) exited with code 2")
