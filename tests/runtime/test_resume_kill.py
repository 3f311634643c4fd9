"""Kill a real run at many points, resume it each time, and get the uninterrupted run's result.

The experiment is `fixtures/resume_exp.py` (five stages; see its docstring). Processes are
SIGKILLed — no exception handler, no ``finally`` runs — during batches, during checkpoint
writes (the temporary file cut in half), between stages, after the last stage; checkpoints are
damaged between runs as a disk might. Each chain of runs must end with the same weights,
counters, callback state, CSV logs and predictions as a run never interrupted, bit for bit.

Processes are forked from one that has imported torch already (`kill_harness.py`); one test also
runs `python -m stagegraph` itself, twice.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self/fd").exists(),
                                reason="needs fork and /proc (Linux)")

HERE = Path(__file__).parent
EXPERIMENT = str(HERE / "fixtures" / "resume_exp.py")
HARNESS = str(HERE / "kill_harness.py")
KILL = "STAGEGRAPH_TEST_KILL_AT"

#: Chains of runs: a kill point each (``None``: run to the end), or a file to damage.
CHAIN_EARLY: list[Any] = [
    "batch:pretrain:1:train:3",       # before any checkpoint exists: resume starts over
    "write:epoch-000002.pth",         # mid-write of the checkpoint ending the first stage
    "event:on_stage_start:train",     # between stages
    "write:train.best.pth",           # mid-write of a checkpoint callback's file
    "batch:train:2:valid:2",          # during validation
    "event:on_stage_end:train",       # after early stopping ended the stage
    None,
]
CHAIN_LATE: list[Any] = [
    "batch:aux:2:train:1",            # a stage training its own model
    "write:latest.json",              # checkpoint renamed, index not yet updated
    "batch:finetune:2:train:3",       # private loader generator, gradient accumulation
    "batch:infer:1:infer:2",          # inference stage
    ("truncate", "epoch-000008.pth"),  # the latest checkpoint damaged: fall back
    "event:on_experiment_end:infer",  # after the last checkpoint
    ("flip", "epoch-000009.pth"),     # bits flipped: only the checksum can tell
    None,
]


def harness(tmp: Path, chain: list[Any], resume_first: bool = False, extra: list[str] | None = None,
            ref_env: dict[str, str] | None = None) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Run the reference, then ``chain`` in another logdir; returns both logdirs and results.

    A point is a kill point (``None``: run to the end), a file to damage (a tuple), or a signal
    the harness sends after a delay (a dict); ``extra`` options go to every run of the chain,
    ``ref_env`` to the reference's environment.
    """
    ref, run = tmp / "ref", tmp / "run"
    base = ["run", EXPERIMENT, "--device", "cpu", "--quiet"]
    steps: list[dict[str, Any]] = [{"run": [*base, "--logdir", str(ref)], "out": str(tmp / "ref"),
                                    "env": dict(ref_env or {})}]
    for i, point in enumerate(chain):
        if isinstance(point, tuple):
            steps.append({"corrupt": str(run / "checkpoints" / "resume" / point[1]),
                          "mode": point[0]})
            continue
        resume = ["--resume"] if i or resume_first else []
        step = {"run": [*base, "--logdir", str(run), *resume, *(extra or [])],
                "out": str(tmp / f"step{i}"), "env": {KILL: ""}}
        if isinstance(point, dict):
            step.update(point)
        else:
            step["env"] = {KILL: point or ""}
        steps.append(step)
    (tmp / "steps.json").write_text(json.dumps(steps))
    done = subprocess.run([sys.executable, HARNESS, str(tmp / "steps.json"),
                           str(tmp / "results.json")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp / "results.json").read_text())
    return ref, run, results[1:]


def err(tmp: Path, step: int) -> str:
    return (tmp / f"step{step}.err").read_text()


def assert_same_result(ref: Path, run: Path) -> None:
    """Final weights, counters and callback state, logs, predictions and best weights: equal."""
    expected = torch.load(ref / "final.pt", weights_only=True)
    actual = torch.load(run / "final.pt", weights_only=True)
    assert expected["model"].keys() == actual["model"].keys()
    for key, tensor in expected["model"].items():
        assert torch.equal(tensor, actual["model"][key]), key
    assert actual["tracker"] == expected["tracker"] and actual["counters"] == expected["counters"]
    for name in ("logs/pretrain.csv", "logs/train.csv", "logs/aux.csv", "logs/finetune.csv",
                 "predictions/infer_infer.csv"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), name
    for stage in ("pretrain", "train", "aux", "finetune"):
        best = f"checkpoints/{stage}.best.pth"
        saved = torch.load(ref / best, weights_only=True)["model"]
        again = torch.load(run / best, weights_only=True)["model"]
        assert all(torch.equal(saved[k], again[k]) for k in saved), best


def assert_chain(tmp: Path, chain: list[Any], results: list[dict[str, Any]]) -> int:
    """Every kill point was reached, and only the last run finished; returns the kills."""
    kills = 0
    for i, (point, result) in enumerate(zip(chain, results, strict=True)):
        if isinstance(point, tuple):
            assert "corrupted" in result
        elif point is None:
            assert result == {"status": "exit", "code": 0}, err(tmp, i)
        else:
            assert result.get("sigkill"), f"{point} was not reached: {result}\n{err(tmp, i)}"
            kills += 1
    return kills


def test_killed_in_the_early_stages_resumes_bit_exactly(tmp_path: Path) -> None:
    ref, run, results = harness(tmp_path, CHAIN_EARLY)
    assert assert_chain(tmp_path, CHAIN_EARLY, results) == 6
    assert "SF604" in err(tmp_path, 1) and "starting from the beginning" in err(tmp_path, 1)
    assert "resuming from" not in err(tmp_path, 1)
    resumed = {i: err(tmp_path, i).split("resuming from ", 1)[1].splitlines()[0]
               for i in range(2, len(CHAIN_EARLY))}
    assert resumed[2].endswith("epoch-000001.pth: stage 'pretrain' after epoch 1, global epoch 1")
    assert resumed[3].endswith("epoch-000002.pth: stage 'pretrain' after epoch 2, global epoch 2")
    assert resumed[6].endswith("epoch-000004.pth: stage 'train' after epoch 2 (the stage had "
                               "finished), global epoch 4")
    assert not list((run / "checkpoints").glob(".*.tmp"))  # half-written files cleaned up
    assert_same_result(ref, run)


def test_killed_in_the_late_stages_resumes_bit_exactly(tmp_path: Path) -> None:
    ref, run, results = harness(tmp_path, CHAIN_LATE)
    assert assert_chain(tmp_path, CHAIN_LATE, results) == 5
    assert "epoch-000006.pth: stage 'aux' after epoch 2" in err(tmp_path, 2)  # not yet indexed
    assert "epoch-000007.pth: stage 'finetune' after epoch 1" in err(tmp_path, 3)
    fell_back = err(tmp_path, 5)
    assert "warning[SF602]" in fell_back and "epoch-000008.pth" in fell_back
    assert "epoch-000007.pth: stage 'finetune' after epoch 1" in fell_back
    flipped = err(tmp_path, 7)
    assert "checksum does not match" in flipped and "epoch-000008.pth: stage 'finetune'" in flipped
    resume = run / "checkpoints" / "resume"
    index = json.loads((resume / "latest.json").read_text())
    blobs = sorted({b for entry in index["checkpoints"] for b in entry["blobs"]})
    assert sorted(p.name for p in resume.iterdir()) == [  # damaged files set aside
        *blobs, "epoch-000008.pth", "epoch-000008.pth.corrupt", "epoch-000009.pth",
        "epoch-000009.pth.corrupt", "finished.json", "latest.json"]
    assert_same_result(ref, run)


def test_a_real_process_killed_mid_write_resumes(tmp_path: Path) -> None:
    """Killed through `python -m stagegraph` in a fresh interpreter, then resumed."""
    run = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-m", "stagegraph", "run", EXPERIMENT, "--device",
                             "cpu", "--quiet", "--logdir", str(run)], capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, KILL: "write:epoch-000005.pth"})
    assert killed.returncode == -9, killed.stderr
    assert list((run / "checkpoints" / "resume").glob(".epoch-000005.pth.*.tmp"))  # half file
    ref, run, results = harness(tmp_path, [None], resume_first=True)
    assert results == [{"status": "exit", "code": 0}], err(tmp_path, 0)
    assert "epoch-000004.pth: stage 'train' after epoch 2" in err(tmp_path, 0)
    assert "Traceback" not in err(tmp_path, 0)
    assert_same_result(ref, run)


#: Killed while the background writer is still writing the last epoch's checkpoint.
CHAIN_INFLIGHT: list[Any] = [
    "inflight:train.best.pth:train:2:train:1",  # global epoch 3's state file: its resume file
                                                # waits behind it
    "inflight:epoch-000005.pth:aux:2:train:2",  # global epoch 5's resume file itself
    None,
]


def test_killed_during_a_background_write_resumes_from_the_checkpoint_before(
        tmp_path: Path) -> None:
    ref, run, results = harness(tmp_path, CHAIN_INFLIGHT)
    assert assert_chain(tmp_path, CHAIN_INFLIGHT, results) == 2
    assert "epoch-000002.pth: stage 'pretrain' after epoch 2" in err(tmp_path, 1)
    assert "epoch-000004.pth: stage 'train' after epoch 2" in err(tmp_path, 2)
    assert_same_result(ref, run)


# --- mid-epoch checkpoints (--checkpoint-every) and graceful stops (SIGTERM, SIGUSR1) --------
EVERY = ["--checkpoint-every", "3"]
#: Train loaders have 5 batches: a checkpoint after batch 3, killed in batch 5 or stopped.
CHAIN_MID: list[Any] = [
    "batch:pretrain:1:train:5",       # SIGKILL: resumes from batch 3 of epoch 1
    "TERM@batch:pretrain:2:valid:2",  # SIGTERM in validation: a checkpoint after valid batch 2
    "USR1@batch:aux:2:train:2",       # SLURM's warning signal, in a stage training its own model
    "batch:finetune:1:train:5",       # accumulation: a step pending (and its gradients) at batch 3
    "TERM@batch:infer:1:infer:2",     # after the last batch, before the predictions are written
    None,
]


def test_killed_and_stopped_mid_epoch_resumes_bit_exactly(tmp_path: Path) -> None:
    ref, run, results = harness(tmp_path, CHAIN_MID, extra=EVERY)
    for i, (point, result) in enumerate(zip(CHAIN_MID, results, strict=True)):
        if point is None:
            assert result == {"status": "exit", "code": 0}, err(tmp_path, i)
        elif "@" in point:  # stopped cleanly, after a checkpoint where it stopped
            assert result == {"status": "exit", "code": 75}, err(tmp_path, i)
            assert "resume checkpoint written to" in err(tmp_path, i)
            assert "Traceback" not in err(tmp_path, i)
        else:
            assert result.get("sigkill"), f"{point} was not reached: {result}\n{err(tmp_path, i)}"
    assert ("stopped by SIGTERM at stage 'pretrain', epoch 2, loader 'valid', batch 2: resume "
            "checkpoint written to") in err(tmp_path, 1)
    assert "stopped by SIGUSR1 at stage 'aux', epoch 2, loader 'train', batch 2" in err(tmp_path, 2)
    resumed = [err(tmp_path, i).split("resuming from ", 1)[1].splitlines()[0]
               for i in range(1, len(CHAIN_MID))]
    assert resumed[0].endswith("-step-000000003.pth: stage 'pretrain' in epoch 1, loader 'train' "
                               "after batch 3, global epoch 1")
    assert "stage 'pretrain' in epoch 2, loader 'valid' after batch 2" in resumed[1]
    assert "stage 'aux' in epoch 2, loader 'train' after batch 2" in resumed[2]
    assert "stage 'finetune' in epoch 1, loader 'train' after batch 3" in resumed[3]
    assert "stage 'infer' in epoch 1, loader 'infer' after batch 2" in resumed[4]
    assert_same_result(ref, run)


def test_signals_at_random_moments_resume_bit_exactly(tmp_path: Path) -> None:
    """The harness's parent sends SIGTERM or SIGKILL after a random delay (seeded)."""
    chance = random.Random(9)
    chain: list[Any] = [{"signal": chance.choice(["TERM", "KILL"]),
                         "after": chance.uniform(0.1, 0.8)} for _ in range(4)]
    ref, run, results = harness(tmp_path, [*chain, None], extra=EVERY)
    for i, result in enumerate(results[:-1]):
        assert result in ({"status": "exit", "code": 75}, {"status": "exit", "code": 0},
                          {"status": "killed", "code": -9, "sigkill": True},
                          {"status": "killed", "code": -15, "sigkill": False}), err(tmp_path, i)
    assert results[-1] == {"status": "exit", "code": 0}, err(tmp_path, len(chain))
    assert_same_result(ref, run)
