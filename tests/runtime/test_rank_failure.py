"""A rank that fails, loses a peer or is stopped says which rank, what happened and what to do —
never with a traceback, not even in the error file torchrun reads. The real thing (rank 1 of a
`--ddp 2` run SIGKILLed) is at the end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ddp_torchrun import BOUND_SECONDS, DDP_RUN, launch

from stagegraph.launch import TorchrunEnv
from stagegraph.runtime.errors import RunError
from stagegraph.runtime.rank_failure import (
    Peer,
    gone_peers,
    rank_error,
    record_for_torchrun,
    what_next,
)

HOST = socket.gethostname()
LOST = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:1: Connection "
                    "reset by peer. This is typically caused by a remote worker hanging")


def ended_process() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def lost_peer_error() -> RunError:
    err = RunError("run failed at stage 'train', epoch 2, loader 'train', batch 2: "
                   f"RuntimeError: {LOST}", {"stage": "train", "epoch": 2, "loader": "train",
                                              "batch": 2})
    err.__cause__ = LOST
    return err


def test_a_peer_on_this_host_whose_process_ended_is_named() -> None:
    pid = ended_process()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not waited for yet
    time.sleep(0.5)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        peers = [Peer(0, HOST, os.getpid()), Peer(1, HOST, pid), Peer(2, HOST, zombie.pid),
                 Peer(3, HOST, alive.pid), Peer(4, "elsewhere", pid)]
        assert gone_peers(peers) == [peers[1], peers[2]]
        assert gone_peers([peers[3]], seconds=0.2) == []
    finally:
        alive.kill()
        alive.wait()
        zombie.wait()


def test_a_rank_that_lost_a_peer_names_it_and_says_what_next() -> None:
    pid = ended_process()
    env = TorchrunEnv(0, 2, 0, 2)
    text = str(rank_error(lost_peer_error(), env, 600, [Peer(0, HOST, os.getpid()),
                                                        Peer(1, HOST, pid)]))
    assert text == (
        f"rank 0 of 2: run failed at stage 'train', epoch 2, loader 'train', batch 2: rank 1 "
        f"(pid {pid}) left the process group, failed or killed (its own error, if it had time "
        "to print one, is above; torchrun's summary says how it ended)\n"
        f"  hint: {what_next(env)}")
    elsewhere = str(rank_error(lost_peer_error(), env, 600, [Peer(1, "node7", pid)]))
    assert "another rank most likely failed first" in elsewhere and "--resume" in elsewhere


def test_what_next_depends_on_torchruns_restarts() -> None:
    assert "with --resume" in what_next(TorchrunEnv(0, 2, 0, 2))
    assert "--max-restarts N" in what_next(TorchrunEnv(0, 2, 0, 2))
    assert what_next(TorchrunEnv(0, 2, 0, 2, restart=0, max_restarts=2)) == (
        "torchrun restarts every rank while --max-restarts allows, and the run resumes from "
        "its latest checkpoint by itself")


def test_the_error_file_holds_the_message_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    error = RunError("rank 1 of 2: run failed at stage 'train': ValueError: boom")
    try:
        raise error from ValueError("boom")
    except RunError:
        record_for_torchrun(error)
    data = json.loads(path.read_text())
    assert data["message"]["message"] == str(error)
    assert data["message"]["extraInfo"]["py_callstack"] == str(error)
    assert int(data["message"]["extraInfo"]["timestamp"]) > 0
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE")
    record_for_torchrun(error)  # no file asked for: nothing happens


def test_a_killed_rank_is_named_with_its_signal_and_nobody_prints_a_traceback(
        tmp_path: Path) -> None:
    run = launch([*DDP_RUN, "--logdir", "logs"], tmp_path, SG_DDP_KILL="1,train,1,2")
    print(f"both ranks ended {run.seconds:.1f} s after rank 1 was killed")
    assert run.code == 1 and run.seconds < BOUND_SECONDS
    assert "Traceback" not in run.err, run.err
    assert "stagegraph: the distributed run failed: rank 1 (local rank 1, pid " in run.err
    assert "was killed by SIGKILL\n" in run.err
    assert ("  hint: with a --logdir, the same command with --resume continues from the latest "
            "checkpoint") in run.err
    # Rank 0 saw rank 1 go, or torchrun stopped it first: either way it says so.
    assert ("error: rank 0 of 2: run failed at stage 'train', epoch 1, loader 'train'" in run.err
            and "left the process group, failed or killed" in run.err) or (
        "stagegraph: rank 0 of 2 stopped by SIGTERM" in run.err), run.err
