"""Relaunching into a logdir with real processes: nothing is deleted before newer state is
durable, a relaunch never silently replaces an unfinished run, and two runs never share a logdir.

The experiment is `fixtures/resume_exp.py`; processes are SIGKILLed (no handler runs) by the
experiment at named points, forked by `kill_harness.py` as in test_resume_kill.py, and each chain
must end with the uninterrupted run's weights, counters, logs, predictions and best weights.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_resume_kill import EXPERIMENT, HARNESS, KILL, assert_same_result

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self/fd").exists(),
                                reason="needs fork and /proc (Linux)")

BASE = ["run", EXPERIMENT, "--device", "cpu", "--quiet"]


def chain(tmp: Path, steps: list[tuple[str, ...]]) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Run the reference, then ``steps`` on one logdir: ``("run", KILL_POINT, *flags)``
    (``""``: no kill) or ``("ls",)``; returns both logdirs and the steps' results."""
    ref, run = tmp / "ref", tmp / "run"
    plan: list[dict[str, Any]] = [{"run": [*BASE, "--logdir", str(ref)], "out": str(ref) + "-"}]
    for i, (kind, *rest) in enumerate(steps):
        if kind == "ls":
            plan.append({"ls": str(run)})
        else:
            point, *flags = rest
            plan.append({"run": [*BASE, "--logdir", str(run), *flags],
                         "out": str(tmp / f"step{i}"), "env": {KILL: point}})
    (tmp / "steps.json").write_text(json.dumps(plan))
    done = subprocess.run([sys.executable, HARNESS, str(tmp / "steps.json"),
                           str(tmp / "results.json")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp / "results.json").read_text())
    assert results[0] == {"status": "exit", "code": 0}
    return ref, run, results[1:]


def err(tmp: Path, step: int) -> str:
    return (tmp / f"step{step}.err").read_text()


def killed(result: dict[str, Any]) -> bool:
    return bool(result.get("sigkill"))


def test_a_relaunch_killed_before_its_first_checkpoint_loses_nothing(tmp_path: Path) -> None:
    ref, run, results = chain(tmp_path, [
        ("run", "batch:train:2:train:1"),                    # 0: unfinished after epoch 3
        ("run", ""),                                         # 1: relaunched as is: refused
        ("run", "batch:pretrain:1:train:3", "--overwrite"),  # 2: starts over, killed at once
        ("ls",),                                             # 3
        ("run", ""),                                         # 4: still refused
        ("run", "", "--resume"),                             # 5: the old run, continued
        ("ls",),                                             # 6
    ])
    assert killed(results[0]) and killed(results[2])
    for step in (1, 4):
        assert results[step] == {"status": "exit", "code": 1}, err(tmp_path, step)
        # The killed run's lock file is taken over (with a warning), then the run refuses.
        message = err(tmp_path, step).split("cannot run: ", 1)[1]
        assert message.startswith(f"log directory {str(run)!r} holds an unfinished run")
        assert "epoch-000003.pth (stage 'train' after epoch 1, global epoch 3)" in message
        assert "hint: pass --resume to continue it, or --overwrite to start over" in message
        assert "Traceback" not in message
    assert "set aside in" in err(tmp_path, 4)
    listed = results[3]["ls"]
    assert any(name.startswith(".superseded/") and name.endswith(
        "/checkpoints/resume/epoch-000003.pth") for name in listed), listed
    assert not any(name.startswith("checkpoints/resume/epoch-") for name in listed)
    assert results[5] == {"status": "exit", "code": 0}, err(tmp_path, 5)
    assert "brought back the run set aside in" in err(tmp_path, 5)
    resumed = err(tmp_path, 5).split("resuming from ", 1)[1].splitlines()[0]
    assert resumed.startswith(f"{run}/.superseded/")
    assert resumed.endswith("/checkpoints/resume/epoch-000003.pth: stage 'train' after epoch 1, "
                            "global epoch 3")
    assert not any(name.startswith(".superseded") for name in results[6]["ls"])
    assert_same_result(ref, run)


def test_overwrite_deletes_the_old_run_only_once_a_new_checkpoint_is_durable(
        tmp_path: Path) -> None:
    ref, run, results = chain(tmp_path, [
        ("run", "batch:aux:1:train:1"),                      # 0: unfinished after epoch 4
        ("run", "write:epoch-000001.pth", "--overwrite"),    # 1: killed writing its first
        ("ls",),                                             # 2
        ("run", "batch:pretrain:2:train:1", "--overwrite"),  # 3: killed after its first
        ("ls",),                                             # 4
        ("run", "", "--resume"),                             # 5
    ])
    assert killed(results[0]) and killed(results[1]) and killed(results[3])
    kept = results[2]["ls"]
    assert any(n.startswith(".superseded/") and n.endswith("/checkpoints/resume/epoch-000004.pth")
               for n in kept), kept
    # The half-written checkpoint, and the blobs it was to reference (written before it).
    assert [n for n in kept if n.startswith("checkpoints/resume/")
            and not n.startswith("checkpoints/resume/blob-")] == [
        next(n for n in kept if n.startswith("checkpoints/resume/.epoch-000001.pth."))]
    assert "held an unfinished run, set aside in" in err(tmp_path, 3)
    after = results[4]["ls"]
    assert not any(n.startswith(".superseded") for n in after), after
    assert "checkpoints/resume/epoch-000001.pth" in after
    assert results[5] == {"status": "exit", "code": 0}, err(tmp_path, 5)
    assert "stage 'pretrain' after epoch 1, global epoch 1" in err(tmp_path, 5)
    assert_same_result(ref, run)


def test_a_resume_from_an_older_checkpoint_killed_before_its_first_loses_nothing(
        tmp_path: Path) -> None:
    older = tmp_path / "run" / "checkpoints" / "resume" / "epoch-000005.pth"
    ref, run, results = chain(tmp_path, [
        ("run", "batch:finetune:1:train:1"),                         # 0: checkpoints 5 and 6
        ("run", "write:epoch-000006.pth", "--resume", str(older)),   # 1: from 5, killed writing
        ("ls",),                                                     # 2
        ("run", "", "--resume"),                                     # 3: back to 6
    ])
    assert killed(results[0]) and killed(results[1])
    assert "older than the latest checkpoint of" in err(tmp_path, 1)
    assert "(epoch-000006.pth): that run is set aside in" in err(tmp_path, 1)
    kept = results[2]["ls"]
    assert any(n.startswith(".superseded/") and n.endswith("/checkpoints/resume/epoch-000006.pth")
               for n in kept), kept
    assert results[3] == {"status": "exit", "code": 0}, err(tmp_path, 3)
    assert "brought back the run set aside in" in err(tmp_path, 3)
    assert "/checkpoints/resume/epoch-000006.pth: stage 'aux' after epoch 2" in err(tmp_path, 3)
    assert_same_result(ref, run)


# --- the lock, between two real processes ------------------------------------------------------
HOLD = """
import sys, time
from stagegraph.runtime.lock import LogdirLock
LogdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_run_is_refused_and_a_dead_holders_lock_taken_over(tmp_path: Path) -> None:
    logdir = tmp_path / "run"
    logdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(logdir)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        command = [sys.executable, "-m", "stagegraph", *BASE, "--logdir", str(logdir)]
        started = time.monotonic()
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert second.stderr.startswith(
            f"cannot run: log directory {str(logdir)!r} is in use by another run: process "
            f"{holder.pid} on host {socket.gethostname()!r}, started "), second.stderr
        assert "hint: wait for that run to finish" in second.stderr
        assert not (logdir / "checkpoints").exists()  # refused before touching anything
        assert time.monotonic() - started < 60
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    third = subprocess.run([*command, "--check"], capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert (f"warning: took over the lock {logdir / '.stagegraph.lock'} left by process "
            f"{holder.pid} on host {socket.gethostname()!r}") in third.stderr
    assert not (logdir / ".stagegraph.lock").exists()
