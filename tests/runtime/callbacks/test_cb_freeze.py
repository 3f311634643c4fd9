"""`FreezeCallback` in real runs: frozen weights stay put, BatchNorm stays in eval mode, the
unfrozen parameters join the optimizer as a group of their own, and resume rebuilds that group."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime import RunError
from stagegraph.runtime.callbacks import FreezeCallback, ModelSummary


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                      nn.Dropout(0.3))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class Probe(sg.Callback):
    """Records, per train loader, the backbone's mode and which parameters require grad."""

    order = sg.CallbackOrder.External

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool, bool, bool, int]] = []

    def on_batch_end(self, runner: Any) -> None:
        if runner.is_train_loader and runner.loader_batch_step == 1:
            model = runner.model
            self.seen.append((runner.epoch, model.backbone[1].training, model.head.training,
                              model.backbone[0].weight.requires_grad,
                              len(runner.optimizer.param_groups)))


class Stop(sg.Callback):
    """Fails the run at the start of global epoch ``at`` (the checkpoint before it is saved);
    the same callback in the resumed run (an unchanged plan) is disarmed."""

    armed: ClassVar[dict[str, int]] = {}

    def on_epoch_start(self, runner: Any) -> None:
        if runner.global_epoch == self.armed.get("at") and "batch" not in self.armed:
            raise RuntimeError("stop")

    def on_batch_end(self, runner: Any) -> None:
        if (runner.is_train_loader and runner.global_epoch == self.armed.get("at")
                and runner.loader_batch_step == self.armed.get("batch")):
            raise RuntimeError("stop")


def _data(n: int, seed: int) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    return TensorDataset(x, (x[:, 0] - x[:, 2] > 0).long())


def _experiment(*, epochs: int = 4, unfreeze: int | None = 3, stop: bool = False,
                optimizer: Any = None, callbacks: dict[str, Any] | None = None,
                modules: Any = "backbone") -> sg.Experiment:
    exp = sg.Experiment(
        "freeze", seed=7, model=Net, criterion=nn.CrossEntropyLoss(),
        optimizer=optimizer or (lambda m: torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)),
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6))
    found = {"freeze": FreezeCallback(modules, unfreeze_at_epoch=unfreeze, lr_factor=0.5),
             **(callbacks or {})}
    if stop:
        found["stop"] = Stop()
    exp.add_stage("train", num_epochs=epochs, callbacks=found,
                  loaders={"train": DataLoader(_data(64, 0), batch_size=16, shuffle=True),
                           "valid": DataLoader(_data(32, 1), batch_size=16)})
    return exp


def test_frozen_until_the_epoch_then_trained_in_a_group_of_its_own() -> None:
    probe = Probe()
    runner = sg.run(_experiment(callbacks={"probe": probe}), device="cpu", verbose=False)
    # Epochs 1-2 frozen: BatchNorm in eval mode on train loaders, one param group.
    assert probe.seen == [(1, False, True, False, 1), (2, False, True, False, 1),
                          (3, True, True, True, 2), (4, True, True, True, 2)]
    groups = runner.optimizer.param_groups
    backbone = {id(p) for p in runner.model.backbone.parameters()}
    assert {id(p) for p in groups[1]["params"]} == backbone
    assert not backbone & {id(p) for p in groups[0]["params"]}
    # The new group started at half the first group's lr after two cosine steps (0.2 * 0.75),
    # and the scheduler drives it from there, keeping the ratio.
    assert groups[1]["initial_lr"] == pytest.approx(0.5 * 0.2 * 0.75)
    assert runner.scheduler.base_lrs == pytest.approx([0.2, 0.075])
    assert groups[1]["lr"] == pytest.approx(0.5 * groups[0]["lr"])
    assert groups[0]["lr"] < 0.15


def test_frozen_weights_do_not_move_and_the_batchnorm_statistics_neither() -> None:
    exp = _experiment(unfreeze=None, epochs=2)
    torch.manual_seed(0)
    model = Net()
    exp.components["model"] = model
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head = model.head.weight.detach().clone()
    sg.run(exp, device="cpu", verbose=False)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running stats
    assert not torch.equal(head, model.head.weight)
    # Frozen for the stage only: requires_grad comes back at its end.
    assert all(p.requires_grad for p in model.parameters())


def test_an_optimizer_factory_sees_requires_grad() -> None:
    seen: list[int] = []

    def trainable_only(model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        seen.append(len(params))
        return torch.optim.Adam(params, lr=1e-2)

    summary = ModelSummary()
    exp = _experiment(unfreeze=2, epochs=2, optimizer=trainable_only,
                      callbacks={"summary": summary})
    runner = sg.run(exp, device="cpu", verbose=False)
    assert seen == [2]  # the head's weight and bias only
    rows = {row.name: row for row in summary.tables["train"]}
    assert rows["backbone"].trainable == 0 and rows["backbone"].frozen == 6 * 8 + 8 + 16
    assert rows["head"].trainable == 18
    assert [len(g["params"]) for g in runner.optimizer.param_groups] == [2, 4]
    # Unfrozen after one cosine step of six: half of 0.01 * (1 + cos(pi / 6)) / 2.
    assert runner.optimizer.param_groups[1]["initial_lr"] == pytest.approx(
        0.5 * 1e-2 * (1 + math.cos(math.pi / 6)) / 2)


def run(logdir: Path, resume: bool = False) -> Any:
    plan = sg.compile(_experiment(stop=True), device="cpu", logdir=str(logdir), verbose=False)
    return sg.Runner(plan, checkpoint_every=2, resume=resume).run()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run(tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize("stop", [{"at": 2}, {"at": 4}, {"at": 3, "batch": 3}],
                         ids=["before-the-unfreeze", "after-the-unfreeze", "mid-unfreeze-epoch"])
def test_resumed_runs_rebuild_the_same_param_groups(tmp_path: Path, stop: dict[str, int],
                                                    reference: Any) -> None:
    """Stopped before epoch 2 or 4, or inside epoch 3 after a mid-epoch checkpoint (every 2
    batches): resumed, the run ends with the optimizer and weights of the uninterrupted run."""
    Stop.armed.update(stop)
    try:
        with pytest.raises(RunError, match="stop"):
            run(tmp_path / "run")
    finally:
        Stop.armed.clear()
    resumed = run(tmp_path / "run", resume=True)
    assert resumed.resumed_from is not None
    if "batch" in stop:
        assert "loader 'train' after batch 2" in resumed.resume_position
    expected, got = reference.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert got["param_groups"] == expected["param_groups"]
    assert len(got["param_groups"]) == 2
    assert all(torch.equal(got["state"][i]["momentum_buffer"],
                           expected["state"][i]["momentum_buffer"]) for i in expected["state"])
    for name, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_a_pattern_that_matches_nothing_names_the_modules() -> None:
    exp = _experiment(modules=["backbone.*", "encoder"])
    with pytest.raises(RunError) as caught:
        sg.run(exp, device="cpu", verbose=False)
    message = str(caught.value)
    assert "stage 'train', callback 'freeze': 'encoder' matches no module" in message
    assert "top-level modules are backbone, head (and 4 nested ones" in message


def test_glob_patterns_and_arguments() -> None:
    from stagegraph.runtime.callbacks.freeze import match_modules

    model = Net()
    modules, unmatched = match_modules(model, ["backbone.*", "head", "x*"])
    assert len(modules) == 5 and unmatched == ["x*"]
    modules, _ = match_modules({"net": model}, ["net.backbone"])
    assert modules == [model.backbone]
    for bad in ({"modules": []}, {"modules": "a", "unfreeze_at_epoch": 0},
                {"modules": "a", "unfreeze_lr": -1.0}, {"modules": "a", "lr_factor": 0}):
        with pytest.raises(ValueError):
            FreezeCallback(**bad)


def test_an_optimizer_object_gets_the_frozen_parameters_back_for_the_next_stage() -> None:
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    exp = sg.Experiment("object", seed=1, model=model, criterion=nn.CrossEntropyLoss(),
                        optimizer=optimizer)
    loaders = {"train": DataLoader(_data(32, 0), batch_size=16),
               "valid": DataLoader(_data(16, 1), batch_size=16)}
    exp.add_stage("frozen", loaders=loaders, callbacks={"freeze": FreezeCallback("backbone")})
    exp.add_stage("all", loaders=loaders)
    weights: list[torch.Tensor] = []

    class Keep(sg.Callback):
        scope = sg.CallbackScope.experiment

        def on_stage_end(self, runner: Any) -> None:
            weights.append(runner.model.backbone[0].weight.detach().clone())

    exp.stages[0].callbacks["keep"] = Keep()
    before = model.backbone[0].weight.detach().clone()
    sg.run(exp, device="cpu", verbose=False)
    assert torch.equal(weights[0], before)  # frozen in the first stage
    assert not torch.equal(weights[1], before)  # trained in the second
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 6


def test_a_model_without_submodules_says_so() -> None:
    from types import SimpleNamespace

    freeze = FreezeCallback("backbone")
    runner = SimpleNamespace(model=nn.Linear(2, 2), stage_name="warmup",
                             callbacks={"frozen": freeze}, distributed_rank=-1)
    with pytest.raises(ValueError, match=r"stage 'warmup', callback 'frozen': 'backbone' "
                                         r"matches no module: the model \(Linear\) has no "
                                         "submodules"):
        freeze.setup_model(runner)


def test_unfreezing_is_refused_in_a_distributed_run() -> None:
    from types import SimpleNamespace

    runner = SimpleNamespace(model=Net(), stage_name="train", callbacks={}, distributed_rank=0)
    with pytest.raises(ValueError, match="unfreezing in a distributed run is not supported"):
        FreezeCallback("backbone", unfreeze_at_epoch=2).setup_model(runner)
    FreezeCallback("backbone").setup_model(runner)  # frozen for the whole stage: fine
    assert not any(p.requires_grad for p in runner.model.backbone.parameters())
