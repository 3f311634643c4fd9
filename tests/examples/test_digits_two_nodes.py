"""A two-node rehearsal on one machine: the digits example trained by two torchrun agents, one
process each, meeting in a c10d rendezvous on 127.0.0.1 — as two machines would — ends with the
same weights and predictions, bit for bit, as one agent running both processes.

The recipe is in docs/distributed.md. About 10 s per run alone on two cores, mostly start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "examples" / "digits.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
RUN = ["-m", "stagegraph", "run", str(EXAMPLE), "--quiet", "--device", "cpu"]

pytest.importorskip("sklearn")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1"}


def agent(nnodes: int, nproc: int, port: int, logdir: Path) -> subprocess.Popen[str]:
    """One torchrun agent: what each machine runs, with the rendezvous on the first machine."""
    command = [*TORCHRUN, "--nnodes", str(nnodes), "--nproc-per-node", str(nproc),
               "--rdzv-id", "digits", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", *RUN, "--logdir", str(logdir)]
    return subprocess.Popen(command, env=environment(), cwd=logdir.parent, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(agents: list[subprocess.Popen[str]]) -> str:
    outputs = [process.communicate(timeout=300) for process in agents]
    text = "\n".join(out + err for out, err in outputs)
    assert all(process.returncode == 0 for process in agents), text[-4000:]
    return text


def test_two_agents_train_the_digits_as_one_node_with_two_processes(tmp_path: Path) -> None:
    one, two = tmp_path / "one" / "runs", tmp_path / "two" / "runs"
    for logdir in (one, two):
        logdir.parent.mkdir()
    finish([agent(1, 2, free_port(), one)])
    port = free_port()
    text = finish([agent(2, 1, port, two), agent(2, 1, port, two)])
    assert "Traceback" not in text
    assert text.count("held-out test accuracy") == 2  # a callback of every rank
    for stage in ("pretrain", "train", "finetune"):
        for kind in ("last", "best"):
            name = f"checkpoints/{stage}.{kind}.pth"
            expected = torch.load(one / name, weights_only=True)["model"]
            got = torch.load(two / name, weights_only=True)["model"]
            assert expected.keys() == got.keys()
            assert all(torch.equal(expected[k], got[k]) for k in expected), name
    for name in ("predictions/infer_infer.csv", "test_accuracy.txt", "logs/train.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
