"""torchrun's elastic restarts: a restarted group resumes the run its failed attempt began.

In this process, a world of one rank under the variables torchrun's agent sets for each attempt
(``TORCHELASTIC_RESTART_COUNT``, ``TORCHELASTIC_MAX_RESTARTS``): which run a restart resumes, and
which it leaves alone. The real thing — two ranks, one SIGKILLed mid-epoch, torchrun restarting
the group — is at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from resume_helpers import GLOBAL_EPOCHS, assert_same, outcome, run
from test_ddp_torchrun import torchrun, weights
from test_distributed import free_port

from stagegraph.runtime import LogdirError
from stagegraph.runtime.elastic import JOB_FILE

Attempt = Callable[..., None]
RESTARTED = "stagegraph: torchrun restarted the group (restart 1 of at most 2)"


@pytest.fixture
def attempt(monkeypatch: pytest.MonkeyPatch) -> Attempt:
    """Sets what torchrun's agent gives rank 0 of a world of one in attempt ``restart``."""
    def set_env(restart: int, max_restarts: int = 2) -> None:
        for name, value in {"RANK": 0, "WORLD_SIZE": 1, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 1,
                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": free_port(),
                            "TORCHELASTIC_RUN_ID": "test", "TORCHELASTIC_RESTART_COUNT": restart,
                            "TORCHELASTIC_MAX_RESTARTS": max_restarts}.items():
            monkeypatch.setenv(name, str(value))
    return set_env


@pytest.mark.parametrize("count", [1, 0])
def test_a_restarted_group_resumes_its_run_from_the_latest_checkpoint(
        tmp_path: Path, attempt: Attempt, capsys: pytest.CaptureFixture[str], count: int) -> None:
    """Whatever the agent's count: one whose own ranks were healthy does not increase it."""
    attempt(0)
    expected = outcome(run(tmp_path / "whole"))
    assert run(tmp_path / "run", ("epoch", 4)) is None  # the first attempt fails
    assert json.loads((tmp_path / "run" / JOB_FILE).read_text())["run_id"] == "test"
    capsys.readouterr()
    attempt(count)
    resumed = run(tmp_path / "run")  # the same arguments: no --resume
    assert resumed.resumed_from == tmp_path / "run/checkpoints/resume/epoch-000003.pth"
    assert resumed.restarted and resumed.global_epoch == GLOBAL_EPOCHS
    assert_same(expected, outcome(resumed))
    restarted = RESTARTED if count else "stagegraph: torchrun restarted the group"
    assert capsys.readouterr().err == (
        f"{restarted}: resuming from {resumed.resumed_from}: stage 'b' after epoch 1, global "
        "epoch 3\n")


def test_a_restart_before_the_first_checkpoint_starts_from_the_beginning(
        tmp_path: Path, attempt: Attempt, capsys: pytest.CaptureFixture[str]) -> None:
    attempt(0)
    expected = outcome(run(tmp_path / "whole"))
    assert run(tmp_path / "run", ("epoch", 1)) is None
    attempt(1)
    again = run(tmp_path / "run")
    assert again.resumed_from is None and again.restarted
    assert_same(expected, outcome(again))
    assert (f"{RESTARTED}: starting from the beginning (this job's run has no checkpoint there "
            f"yet in {tmp_path / 'run'})") in capsys.readouterr().err


def test_a_restart_leaves_another_jobs_run_alone(
        tmp_path: Path, attempt: Attempt, capsys: pytest.CaptureFixture[str]) -> None:
    """The first attempt failed before it took the logdir over: the unfinished run there is
    someone else's, and the restart refuses it as a new run would."""
    attempt(0)
    assert run(tmp_path, ("epoch", 4)) is None
    job = tmp_path / JOB_FILE
    job.write_text(json.dumps({**json.loads(job.read_text()), "agent": 1}))
    attempt(1)
    with pytest.raises(LogdirError, match="holds an unfinished run"):
        run(tmp_path)
    assert (f"{RESTARTED}: not resuming the run in {tmp_path} (its run was begun by another "
            "torchrun job, whose agent ran on host") in capsys.readouterr().err
    job.unlink()  # a run without torchrun's restarts left it
    with pytest.raises(LogdirError, match="holds an unfinished run"):
        run(tmp_path)
    assert (f"{RESTARTED}: not resuming the run in {tmp_path} (no run of this job is there): "
            "starting as a new run\n") in capsys.readouterr().err


def test_only_a_run_torchrun_may_restart_records_its_job(tmp_path: Path,
                                                        attempt: Attempt) -> None:
    attempt(0, max_restarts=0)
    assert not run(tmp_path / "once").restarted
    assert not (tmp_path / "once" / JOB_FILE).exists()
    attempt(0)
    assert not run(tmp_path / "elastic").restarted
    assert (tmp_path / "elastic" / JOB_FILE).exists()


# --- two ranks under torchrun ---------------------------------------------------------------
def test_a_rank_killed_mid_epoch_is_restarted_and_the_run_ends_bit_identical(
        tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert torchrun(whole, "--logdir", "logs").code == 0
    restarted = torchrun(killed, "--logdir", "logs", restarts=1,
                         SG_DDP_KILL="1,train,2,2")  # rank 1, stage 'train', epoch 2, batch 2
    assert restarted.code == 0, restarted.err
    assert "(exitcode: -9) local_rank: 1" in restarted.err  # torchrun saw the kill
    assert restarted.err.count("stagegraph: torchrun restarted the group") == 1, restarted.err
    assert ("stagegraph: torchrun restarted the group (restart 1 of at most 1): resuming from "
            "logs/checkpoints/resume/epoch-000003.pth: stage 'train' after epoch 1, global "
            "epoch 3") in restarted.err
    for rank in (0, 1):
        expected, got = weights(whole, rank), weights(killed, rank)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), rank
    for name in ("pretrain.csv", "train.csv"):
        assert ((killed / "logs/logs" / name).read_text()
                == (whole / "logs/logs" / name).read_text()), name
