"""The distributed runtime inside this process: rank plans and fields from the torchrun environment,
devices, DDP wrapping, the process group's lifetime (a real gloo group of one rank), errors.

The multi-process runs are in test_ddp_torchrun.py.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from trace_helpers import Hook, compile_cpu, loader

import stagegraph as sg
from stagegraph.launch import TorchrunEnv
from stagegraph.runtime.distributed import (
    SIGTERM_EXIT,
    Distributed,
    is_communication_error,
    prepare_model,
    unwrap_model,
)
from stagegraph.runtime.errors import DistributedError, PlanError, RunError
from stagegraph.runtime.rank_failure import SigtermExit, rank_error

SetEnv = Callable[[int, int], None]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def torchrun(monkeypatch: pytest.MonkeyPatch) -> SetEnv:
    """Sets the environment torchrun gives rank ``rank`` of ``world`` processes."""
    def set_env(rank: int, world: int) -> None:
        for name, value in {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": rank,
                            "LOCAL_WORLD_SIZE": world, "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": free_port()}.items():
            monkeypatch.setenv(name, str(value))
    return set_env


@pytest.fixture
def group_of_one() -> Iterator[None]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def model() -> nn.Module:
    return nn.Linear(3, 2)


def experiment(**callbacks: sg.Callback) -> sg.Experiment:
    exp = sg.Experiment("dist", seed=5, model=model, criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    loaders = {"train": lambda: loader(16, 4), "valid": lambda: loader(8, 4)}
    exp.add_stage("one", num_epochs=2, loaders=loaders, callbacks=callbacks)
    exp.add_stage("two", loaders=loaders)
    return exp


def test_a_single_process_is_not_distributed() -> None:
    assert Distributed.from_environment() is None
    runner = sg.Runner(compile_cpu(experiment()))
    assert (runner.distributed_rank, runner.is_distributed_master,
            runner.is_distributed_worker) == (-1, True, False)


@pytest.mark.parametrize(("rank", "kind"), [(0, "master"), (1, "worker")])
def test_the_rank_plan_and_fields_come_from_the_torchrun_environment(
        torchrun: SetEnv, rank: int, kind: str) -> None:
    torchrun(rank, 2)
    plan = sg.compile(experiment(), device="cpu", logdir="runs/x")
    runner = sg.Runner(plan)  # nothing runs: no process group is needed yet
    names = [cb.name for cb in runner.plan.stage("one").callbacks]
    assert runner.plan.rank.value == kind
    assert runner.distributed_rank == rank
    assert runner.is_distributed_master is (rank == 0)
    assert runner.is_distributed_worker is (rank == 1)
    assert ("checkpoint" in names) is (rank == 0) and ("csv_logger" in names) is (rank == 0)


def test_a_plan_for_another_rank_is_refused(torchrun: SetEnv) -> None:
    torchrun(1, 2)
    with pytest.raises(PlanError, match=r"this process is rank 1 of 2 \(a distributed worker\), "
                                        r"but the plan was compiled with rank='master'"):
        sg.Runner(sg.compile(experiment(), device="cpu", rank="master"))


def test_the_device_of_a_rank() -> None:
    ranks = Distributed(TorchrunEnv(1, 2, 1, 2), timeout=10)
    assert ranks.device_for("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert ranks.device_for("auto") == torch.device("cpu")


def test_a_world_of_one_trains_with_ddp_in_one_group_and_tears_it_down(torchrun: SetEnv) -> None:
    seen: list[tuple[str, str, Any, int]] = []

    def look(runner: Any) -> None:
        seen.append((runner.stage_name, type(runner.model).__name__,
                     runner.loaders["train"].sampler, id(dist.group.WORLD)))

    plain = sg.Runner(compile_cpu(experiment())).run()
    torchrun(0, 1)
    runner = sg.Runner(compile_cpu(experiment(look=Hook("on_stage_start", look,
                                                          scope="experiment")))).run()
    assert not dist.is_initialized()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert [(stage, kind) for stage, kind, _, _ in seen] == [
        ("one", "DistributedDataParallel"), ("two", "DistributedDataParallel")]
    assert all(isinstance(s, DistributedSampler) and s.num_replicas == 1 for _, _, s, _ in seen)
    assert seen[0][3] == seen[1][3], "the process group is initialised once per experiment"
    assert runner.is_distributed_master and runner.distributed_rank == 0
    for name, value in unwrap_model(runner.model).state_dict().items():
        assert torch.allclose(value, plain.model.state_dict()[name], atol=1e-6), name


def test_a_failing_rank_names_itself_and_tears_the_group_down(torchrun: SetEnv) -> None:
    def fail(runner: Any) -> None:
        raise ValueError("boom")

    torchrun(0, 1)
    runner = sg.Runner(compile_cpu(experiment(fail=Hook("on_epoch_end", fail))))
    with pytest.raises(RunError, match=r"^rank 0 of 1: run failed at stage 'one', epoch 1, "
                                       r"callback 'fail' \(on_epoch_end\): ValueError: boom$"):
        runner.run()
    assert not dist.is_initialized()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.usefixtures("group_of_one")
def test_prepare_model_wraps_what_trains() -> None:
    device = torch.device("cpu")
    frozen = nn.Linear(2, 2).requires_grad_(False)
    own = DistributedDataParallel(nn.Linear(2, 2))
    prepared = prepare_model({"g": nn.Linear(2, 2), "frozen": frozen, "own": own, "x": 3},
                             device, train=True)
    assert isinstance(prepared["g"], DistributedDataParallel)
    assert prepared["frozen"] is frozen and prepared["own"] is own and prepared["x"] == 3
    plain = nn.Linear(2, 2)
    assert prepare_model(plain, device, train=False) is plain
    assert unwrap_model(prepare_model(plain, device, train=True)) is plain


@pytest.mark.usefixtures("group_of_one")
def test_any_flag_agrees_across_ranks() -> None:
    ranks = Distributed(TorchrunEnv(0, 1, 0, 1), timeout=10, owns_group=False)
    assert ranks.any(True) is True and ranks.any(False) is False


def test_a_lost_peer_gets_a_hint() -> None:
    lost = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [::1]:1")
    assert is_communication_error(lost) and not is_communication_error(ValueError("x"))
    err = RunError("run failed at stage 'train'", {"stage": "train"})
    err.__cause__ = lost
    text = str(rank_error(err, TorchrunEnv(0, 2, 0, 2), timeout=30))
    assert text.startswith("rank 0 of 2: run failed at stage 'train'\n  hint: a collective")
    assert "another rank most likely failed first" in text and "30 s" in text
    assert "STAGEGRAPH_DIST_TIMEOUT" in text


def test_sigterm_says_which_rank_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    sigterm = SigtermExit(TorchrunEnv(1, 2, 1, 2))
    assert sigterm.install()
    try:
        with pytest.raises(SystemExit) as stopped:
            signal.raise_signal(signal.SIGTERM)
        assert "stagegraph: rank 1 of 2 stopped by SIGTERM" in capsys.readouterr().err
        sigterm.reporting = True  # a rank saying its own failure is not cut short
        signal.raise_signal(signal.SIGTERM)
        assert capsys.readouterr().err == ""
    finally:
        sigterm.restore()
    assert stopped.value.code == SIGTERM_EXIT
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_broken_environment_stops_the_runner_before_anything_runs(
        torchrun: SetEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEGRAPH_DIST_TIMEOUT", "never")
    assert Distributed.from_environment() is None  # not distributed: the variable is not read
    torchrun(0, 2)
    with pytest.raises(DistributedError, match="STAGEGRAPH_DIST_TIMEOUT='never' is not a positive"):
        sg.Runner(compile_cpu(experiment()))
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(DistributedError, match="RANK='two' is not an integer"):
        sg.Runner(compile_cpu(experiment()))
