"""Runs `stagegraph run` again and again in forked processes, some of them killed on purpose.

    python tests/runtime/kill_harness.py STEPS.json RESULTS.json

Importing torch and stagegraph takes seconds; forking a process that has done it takes
milliseconds, so the kill tests can afford a dozen real processes. Each ``run`` step forks a
child that calls ``stagegraph.cli.main(argv)`` with its environment (``STAGEGRAPH_TEST_KILL_AT``)
and its output in files; the child either exits with the command's code or is SIGKILLed by the
experiment at the named point. ``corrupt`` steps damage a file between runs, as a disk might.
The parent never runs torch code, so no thread pool exists at fork time.

Steps: ``{"run": [...argv], "env": {...}, "out": "path/prefix"}`` (with ``"signal": "KILL" |
"TERM" | "USR1", "after": SECONDS``, the parent sends the child that signal after that time, if
it still runs), ``{"corrupt": "path", "mode": "truncate" | "flip"}`` or ``{"ls": "folder"}`` (what
a folder holds between two runs). Results, one per step: ``{"status": "killed" | "exit", "code":
N, "seconds": S}`` (the child's wall time), ``{"corrupted": "path"}`` or ``{"ls": [every file
under the folder, relative, sorted]}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch  # imported once, here, for every child
import torch._dynamo  # noqa: F401  (the first optimizer imports it lazily: ~2.5 s per process)

import stagegraph.runtime.callbacks  # noqa: F401
from stagegraph.cli import main


def run(step: dict[str, Any]) -> dict[str, Any]:
    out = step["out"]
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            os.environ.update(step.get("env", {}))
            for fd, suffix in ((1, ".out"), (2, ".err")):
                os.dup2(os.open(out + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            code = main(step["run"])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    status = _wait(pid, step)
    result: dict[str, Any] = (
        {"status": "killed", "code": -os.WTERMSIG(status),
         "sigkill": os.WTERMSIG(status) == signal.SIGKILL} if os.WIFSIGNALED(status)
        else {"status": "exit", "code": os.WEXITSTATUS(status)})
    if step.get("seconds"):
        result["seconds"] = time.monotonic() - started
    return result


def _wait(pid: int, step: dict[str, Any]) -> int:
    """The child's exit status; first, if the step says so, a signal sent after a delay."""
    if "after" in step:
        deadline = time.monotonic() + float(step["after"])
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.002)
        os.kill(pid, getattr(signal, f"SIG{step.get('signal', 'KILL')}"))
    return os.waitpid(pid, 0)[1]


def corrupt(step: dict[str, Any]) -> dict[str, Any]:
    path = Path(step["corrupt"])
    data = bytearray(path.read_bytes())
    if step.get("mode", "truncate") == "truncate":
        data = data[: len(data) // 3]
    else:
        middle = len(data) // 2
        data[middle: middle + 8] = bytes(b ^ 0xFF for b in data[middle: middle + 8])
    path.write_bytes(bytes(data))
    return {"corrupted": str(path)}


def listing(step: dict[str, Any]) -> dict[str, Any]:
    folder = Path(step["ls"])
    return {"ls": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())}


def main_(steps_file: str, results_file: str) -> None:
    steps = json.loads(Path(steps_file).read_text())
    results = [corrupt(step) if "corrupt" in step else listing(step) if "ls" in step
               else run(step) for step in steps]
    Path(results_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main_(sys.argv[1], sys.argv[2])
