"""Real distributed runs: 2 processes started by torchrun, on CPU with gloo.

The experiment is tests/runtime/fixtures/ddp_experiment.py: two stages, a sharded train loader
(8 samples per rank and batch) and, as the reference, the same experiment in this process with
batches of 16 drawn in the same order. Each launch costs a few seconds, mostly importing torch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import stagegraph as sg
from stagegraph.loading import load_experiment

ROOT = Path(__file__).parent.parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "ddp_experiment.py"
#: Both ranks must be gone this soon after one of them failed (torchrun stops the other).
BOUND_SECONDS = 60
#: ``stagegraph run --ddp 2`` on the fixture (torchrun started by stagegraph).
DDP_RUN = ["-m", "stagegraph", "run", str(FIXTURE), "--ddp", "2", "--quiet"]


@dataclass
class Launch:
    code: int
    out: str
    err: str
    seconds: float  # from the start, or from the injected trouble if there was one


def environment(out: Path, **extra: str) -> dict[str, str]:
    """This checkout first on the path of every process, one thread per rank, files to ``out``."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1",
            "SG_DDP_OUT": str(out), **extra}


def launch(args: list[str], out: Path, **extra: str) -> Launch:
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    done = subprocess.run([sys.executable, *args], env=environment(out, **extra), cwd=out,
                          capture_output=True, text=True, timeout=240)
    end = time.time()
    trouble = out / "trouble_at"
    since = float(trouble.read_text()) if trouble.exists() else start
    return Launch(done.returncode, done.stdout, done.stderr, end - since)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(out: Path, *options: str, restarts: int = 0, **extra: str) -> Launch:
    """``torchrun --nproc_per_node 2`` with a c10d rendezvous on a free port, as a user would;
    ``restarts`` is its ``--max-restarts``."""
    command = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--max-restarts", str(restarts),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
               "-m", "stagegraph", "run", str(FIXTURE), "--quiet", *options]
    return launch(command, out, **extra)


def record(out: Path, rank: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / f"record.rank{rank}.json").read_text())
    return data


def weights(out: Path, rank: int) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(out / f"weights.rank{rank}.pt", weights_only=True)
    return state


def reference(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The experiment in this process: one rank (-1), global batches of 16."""
    out.mkdir()
    monkeypatch.setenv("SG_DDP_OUT", str(out))
    sg.run(load_experiment(str(FIXTURE)), logdir=out / "logs", verbose=False)


def test_two_ranks_train_as_one_process_on_the_same_global_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ddp, ref = tmp_path / "ddp", tmp_path / "ref"
    run = launch(["-m", "stagegraph", "run", str(FIXTURE), "--ddp", "2", "--logdir", "logs"],
                 ddp)
    assert run.code == 0, run.err
    reference(ref, monkeypatch)
    check_weights(ddp, ref)
    check_metrics(ddp, ref)
    check_what_each_rank_ran(ddp)
    check_master_outputs(ddp, run)


def check_weights(ddp: Path, ref: Path) -> None:
    expected = weights(ref, -1)
    for rank in (0, 1):
        for name, value in weights(ddp, rank).items():
            assert torch.allclose(value, expected[name], rtol=1e-4, atol=1e-5), (rank, name)
    assert all(torch.equal(a, b) for a, b in zip(weights(ddp, 0).values(),
                                                   weights(ddp, 1).values(), strict=True))


def check_metrics(ddp: Path, ref: Path) -> None:
    """The ranks see identical epoch metrics (all-reduced), close to the single process's; the
    same epochs are best and early stopping ends stage 'train' after its epoch 2 everywhere."""
    epochs = [record(ddp, rank)["epochs"] for rank in (0, 1)]
    assert epochs[0] == epochs[1]
    expected = record(ref, -1)["epochs"]
    assert [(e["stage"], e["epoch"], e["is_best"]) for e in epochs[0]] == [
        (e["stage"], e["epoch"], e["is_best"]) for e in expected] == [
        ("pretrain", 1, True), ("pretrain", 2, True), ("train", 1, True), ("train", 2, True)]
    for got, want in zip(epochs[0], expected, strict=True):
        assert got["metrics"].keys() == want["metrics"].keys()
        assert got["metrics"]["train_master_only"] == 1.0  # logged by the master alone
        for key, value in want["metrics"].items():
            assert got["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def check_what_each_rank_ran(ddp: Path) -> None:
    """Callbacks by node, migrated to stage 'train'; DDP, samplers and one process group."""
    files = {path.name for path in ddp.iterdir() if path.name.split(".")[0] in
             ("master", "worker", "all")}
    assert files == {"master.rank0", "worker.rank1", "all.rank0", "all.rank1"}
    for name in files:
        assert (ddp / name).read_text().split() == ["pretrain", "train"], name
    for rank in (0, 1):
        stages = record(ddp, rank)["stages"]
        assert [s["model"] for s in stages] == ["DistributedDataParallel"] * 2
        assert {(s["sampler"], s["replicas"], s["sampler_rank"], s["batch_size"])
                for s in stages} == {("DistributedSampler", 2, rank, 8)}
        assert (stages[0]["master"], stages[0]["worker"]) == (rank == 0, rank == 1)
        assert stages[0]["group"] == stages[1]["group"], "one process group per experiment"


def check_master_outputs(ddp: Path, run: Launch) -> None:
    """Console, CSV logs and checkpoints come from the master only; checkpoints hold the plain
    module's weights."""
    assert run.err.count("stage 'pretrain': 2 epoch(s)") == 1  # the console is on stderr
    assert run.err.count(", 2 processes (gloo)") == 1  # the device line names the group
    assert run.err.count("best valid metrics per stage:") == 1
    logs = ddp / "logs"
    assert sorted(p.name for p in (logs / "logs").iterdir()) == ["pretrain.csv", "train.csv"]
    last = torch.load(logs / "checkpoints" / "train.last.pth", weights_only=True)
    final = weights(ddp, 0)
    assert last["model"].keys() == final.keys()  # no "module." prefix: unwrapped from DDP
    assert all(torch.equal(last["model"][k], final[k]) for k in final)


def test_a_failure_on_one_rank_ends_both_with_a_clear_error(tmp_path: Path) -> None:
    run = torchrun(tmp_path, SG_DDP_FAIL_RANK="1")
    print(f"both ranks ended {run.seconds:.1f} s after rank 1 failed")
    assert run.code != 0
    assert run.seconds < BOUND_SECONDS
    assert ("error: rank 1 of 2: run failed at stage 'train', epoch 1, loader 'train', "
            "batch 2, callback 'trouble' (on_batch_start): ValueError: injected failure on "
            "rank 1") in run.err
    # Rank 0 either saw its peer go (a failed collective, naming rank 1 once its process has
    # ended) or was stopped by torchrun first; either way it says so.
    assert ("error: rank 0 of 2: run failed at stage 'train'" in run.err
            and (("rank 1 (pid " in run.err and "left the process group" in run.err)
                 or "another rank most likely failed first" in run.err)) or (
        "stagegraph: rank 0 of 2 stopped by SIGTERM" in run.err), run.err
    assert not list(tmp_path.glob("record.rank*.json")), "neither rank reached the end"
    # torchrun's table shows each rank's message (from its error file), not its traceback.
    assert "stagegraph/runtime/runner.py" not in run.err, run.err
    assert "traceback : rank 1 of 2: run failed at stage 'train'" in run.err, run.err


def test_a_hung_rank_ends_the_run_at_the_process_group_timeout(tmp_path: Path) -> None:
    run = torchrun(tmp_path, "--dist-timeout", "5", SG_DDP_HANG_RANK="1")
    print(f"both ranks ended {run.seconds:.1f} s after rank 1 hung (timeout 5 s)")
    assert run.code != 0
    # Rank 0 may enter the collective a little before rank 1 notes the time it hangs.
    assert 4 <= run.seconds < BOUND_SECONDS
    assert "error: rank 0 of 2: run failed at stage 'train', epoch 1, loader 'train'" in run.err
    assert "within the process-group timeout of 5 s" in run.err
    assert "stagegraph: rank 1 of 2 stopped by SIGTERM" in run.err
