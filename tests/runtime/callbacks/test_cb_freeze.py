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


class Groups(sg.Callback):
    """Keeps a copy of the optimizer's param groups and the scheduler's base_lrs at each epoch
    end (after the scheduler's step)."""

    order = sg.CallbackOrder.External

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[dict[str, Any]] = []
        self.base_lrs: list[float] = []

    def on_epoch_end(self, runner: Any) -> None:
        self.groups = [dict(g, params=list(g["params"])) for g in runner.optimizer.param_groups]
        self.base_lrs = list(runner.scheduler.base_lrs)


def test_frozen_until_the_epoch_then_trained_in_a_group_of_its_own() -> None:
    probe, seen = Probe(), Groups()
    runner = sg.run(_experiment(callbacks={"probe": probe, "groups": seen}), device="cpu",
                    verbose=False)
    # Epochs 1-2 frozen: BatchNorm in eval mode on train loaders, one param group.
    assert probe.seen == [(1, False, True, False, 1), (2, False, True, False, 1),
                          (3, True, True, True, 2), (4, True, True, True, 2)]
    groups = seen.groups
    backbone = {id(p) for p in runner.model.backbone.parameters()}
    assert {id(p) for p in groups[1]["params"]} == backbone
    assert not backbone & {id(p) for p in groups[0]["params"]}
    # The new group started at half the first group's lr after two cosine steps (0.2 * 0.75);
    # its base lr is half the first group's, so the scheduler keeps the ratio.
    assert groups[1]["initial_lr"] == pytest.approx(0.5 * 0.2)
    assert seen.base_lrs == pytest.approx([0.2, 0.1])
    assert groups[1]["lr"] == pytest.approx(0.5 * groups[0]["lr"])
    assert groups[0]["lr"] < 0.15
    # At the stage end the optimizer has its one group back, in the model's order.
    assert [id(p) for p in runner.optimizer.param_groups[0]["params"]] == [
        id(p) for p in runner.model.parameters()]
    assert len(runner.optimizer.param_groups) == 1 and runner.scheduler.base_lrs == [0.2]


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

    summary, groups = ModelSummary(), Groups()
    exp = _experiment(unfreeze=2, epochs=2, optimizer=trainable_only,
                      callbacks={"summary": summary, "groups": groups})
    runner = sg.run(exp, device="cpu", verbose=False)
    assert seen == [2]  # the head's weight and bias only
    rows = {row.name: row for row in summary.tables["train"]}
    assert rows["backbone"].trainable == 0 and rows["backbone"].frozen == 6 * 8 + 8 + 16
    assert rows["head"].trainable == 18
    assert [len(g["params"]) for g in groups.groups] == [2, 4]
    # Unfrozen after one cosine step of six: half of 0.01 * (1 + cos(pi / 6)) / 2, after one
    # more step half the first group's lr.
    assert groups.groups[1]["initial_lr"] == pytest.approx(0.5 * 1e-2)
    assert groups.groups[1]["lr"] == pytest.approx(0.5 * 1e-2 * (1 + math.cos(math.pi / 3)) / 2)
    assert [len(g["params"]) for g in runner.optimizer.param_groups] == [2]  # the stage's own


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
    assert len(got["param_groups"]) == 1  # the added group goes at the stage end
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


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone, self.head = nn.Linear(6, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.backbone(x)))


def _loaders() -> dict[str, Any]:
    return {"train": lambda: DataLoader(_data(32, 0), batch_size=8),
            "valid": lambda: DataLoader(_data(16, 1), batch_size=8)}


@pytest.mark.parametrize("unfreeze", [None, 2], ids=["frozen-stage", "unfrozen-at-2"])
def test_load_from_previous_stage_after_a_frozen_stage(unfreeze: int | None) -> None:
    """The finetuning recipe: head only (or the backbone from epoch 2), then everything with
    the head stage's Adam state, each parameter's own."""
    exp = sg.Experiment("recipe", seed=0, model=TwoLayers(), criterion=nn.CrossEntropyLoss())
    exp.add_stage("head", num_epochs=2, loaders=_loaders(),
                  optimizer=sg.optimizer(torch.optim.Adam, lr=1e-3),
                  callbacks={"freeze": FreezeCallback("backbone", unfreeze_at_epoch=unfreeze)})
    exp.add_stage("all", loaders=_loaders(), optimizer=sg.optimizer(
        torch.optim.Adam, lr=1e-4, load_from_previous_stage=True))
    runner = sg.run(exp, device="cpu", verbose=False)
    params = runner.optimizer.param_groups[0]["params"]
    assert [id(p) for p in params] == [id(p) for p in runner.model.parameters()]
    steps = {name: int(runner.optimizer.state[p]["step"])
             for name, p in runner.model.named_parameters()}
    backbone = 4 + (4 if unfreeze else 0)  # 4 batches an epoch
    assert steps == {"backbone.weight": backbone, "backbone.bias": backbone,
                     "head.weight": 12, "head.bias": 12}


class StopAt(sg.Callback):
    """Fails the run at the start of global epoch ``at`` (0: never)."""

    scope = sg.CallbackScope.experiment

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def on_epoch_start(self, runner: Any) -> None:
        if runner.global_epoch == self.at:
            raise RuntimeError("stop")


def _object_experiment(stop_at: int, unfreeze: int | None) -> sg.Experiment:
    torch.manual_seed(0)
    model = TwoLayers()
    exp = sg.Experiment("object", seed=0, model=model, criterion=nn.CrossEntropyLoss(),
                        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2))
    freeze = FreezeCallback("backbone", unfreeze_at_epoch=unfreeze)
    exp.add_stage("head", num_epochs=2, loaders=_loaders(),
                  callbacks={"freeze": freeze, "stop": StopAt(stop_at)})
    exp.add_stage("all", num_epochs=3, loaders=_loaders())
    return exp


@pytest.mark.parametrize("unfreeze", [None, 2], ids=["frozen-stage", "unfrozen-at-2"])
def test_an_experiment_optimizer_resumes_in_the_next_stage(tmp_path: Path,
                                                           unfreeze: int | None) -> None:
    """Stopped in the second stage and resumed, an optimizer object given to the experiment
    ends like the uninterrupted run: its groups are the stage start's again, in order."""
    reference = sg.run(_object_experiment(0, unfreeze), device="cpu", verbose=False)
    with pytest.raises(RunError, match="stop"):
        sg.run(_object_experiment(4, unfreeze), device="cpu", verbose=False, logdir=tmp_path)
    resumed = sg.run(_object_experiment(0, unfreeze), device="cpu", verbose=False,
                     logdir=tmp_path, resume=True)
    assert resumed.resumed_from is not None
    assert len(resumed.optimizer.param_groups) == 1
    for name, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    expected, got = reference.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert got["param_groups"] == expected["param_groups"]
    assert all(torch.equal(got["state"][i]["exp_avg"], expected["state"][i]["exp_avg"])
               for i in expected["state"])


_SCHEDULERS: dict[str, Any] = {
    "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5),
    "MultiStepLR": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 5], 0.3),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8),
    "ConstantLR": lambda o: torch.optim.lr_scheduler.ConstantLR(o, 0.5, total_iters=4),
    "LinearLR": lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.2, total_iters=5),
    "PolynomialLR": lambda o: torch.optim.lr_scheduler.PolynomialLR(o, 8, power=2.0),
    "CosineAnnealingLR": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=3),
    "CosineAnnealingWarmRestarts":
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=3),
    "LambdaLR": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 0.5 ** e),
    "MultiplicativeLR": lambda o: torch.optim.lr_scheduler.MultiplicativeLR(o, lambda e: 0.9),
    "ReduceLROnPlateau": lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, patience=0, factor=0.5, min_lr=1e-6),
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=12),
    "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.01, 0.5, step_size_up=2),
}


@pytest.mark.parametrize("name", sorted(_SCHEDULERS))
def test_every_supported_scheduler_schedules_the_new_group_at_the_ratio(name: str) -> None:
    """After the unfreeze the new group's lr is the first group's times the ratio it started
    at, step after step (momentum too for the cyclic ones), and a state round trip works."""
    from types import SimpleNamespace

    model = TwoLayers()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    scheduler = _SCHEDULERS[name](optimizer)
    runner = SimpleNamespace(model=model, optimizer=optimizer, scheduler=scheduler, epoch=1,
                             stage_name="s", callbacks={}, distributed_rank=-1)
    freeze = FreezeCallback("backbone", unfreeze_at_epoch=3, lr_factor=0.25)
    freeze.on_stage_start(runner)
    for epoch in range(1, 11):
        runner.epoch = epoch
        freeze.on_epoch_start(runner)
        optimizer.step()
        scheduler.step(*([1.0] if name == "ReduceLROnPlateau" else []))  # never improves
        groups = optimizer.param_groups
        assert len(groups) == (2 if epoch >= 3 else 1)
        if epoch >= 3:
            assert groups[1]["lr"] == pytest.approx(0.25 * groups[0]["lr"]), epoch
            assert groups[1]["momentum"] == groups[0]["momentum"]
    scheduler.load_state_dict(scheduler.state_dict())
    freeze.on_stage_end(runner)  # the added group goes, and its scheduler entries
    assert len(optimizer.param_groups) == 1
    assert all(len(getattr(scheduler, attr, [0])) == 1
               for attr in ("base_lrs", "_last_lr", "lr_lambdas", "min_lrs", "max_lrs"))


def test_the_documented_schedulers_are_the_tested_ones() -> None:
    from stagegraph.runtime.callbacks.freeze import SCHEDULERS

    assert set(_SCHEDULERS) == set(SCHEDULERS)
    docs = Path(__file__).parents[3] / "docs"
    for page in ("callbacks.md", "finetuning.md"):
        text = (docs / page).read_text(encoding="utf-8")
        assert all(f"`{name}`" in text for name in SCHEDULERS), page


@pytest.mark.parametrize("name", ["LambdaLR", "OneCycleLR"])
def test_a_run_unfreezes_under_a_per_group_scheduler(name: str) -> None:
    groups = Groups()
    exp = sg.Experiment("sched", seed=0, model=TwoLayers(), criterion=nn.CrossEntropyLoss(),
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9),
                        scheduler=_SCHEDULERS[name])
    exp.add_stage("s", num_epochs=3, loaders=_loaders(), callbacks={
        "freeze": FreezeCallback("backbone", unfreeze_at_epoch=2), "groups": groups})
    sg.run(exp, device="cpu", verbose=False)
    assert len(groups.groups) == 2
    assert groups.groups[1]["lr"] == pytest.approx(0.1 * groups.groups[0]["lr"])


@pytest.mark.parametrize("name", ["LambdaLR", "OneCycleLR"])
def test_a_run_resumed_after_the_unfreeze_under_a_per_group_scheduler(tmp_path: Path,
                                                                       name: str) -> None:
    def build(stop_at: int) -> sg.Experiment:
        exp = sg.Experiment("sched", seed=0, model=TwoLayers, criterion=nn.CrossEntropyLoss(),
                            optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.2,
                                                                momentum=0.9),
                            scheduler=_SCHEDULERS[name])
        exp.add_stage("s", num_epochs=4, loaders=_loaders(), callbacks={
            "freeze": FreezeCallback("backbone", unfreeze_at_epoch=2), "stop": StopAt(stop_at)})
        return exp

    reference = sg.run(build(0), device="cpu", verbose=False)
    with pytest.raises(RunError, match="stop"):
        sg.run(build(3), device="cpu", verbose=False, logdir=tmp_path)
    resumed = sg.run(build(0), device="cpu", verbose=False, logdir=tmp_path, resume=True)
    assert resumed.resumed_from is not None
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert resumed.scheduler.state_dict() == reference.scheduler.state_dict()


class Batches(sg.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_batch_end(self, runner: Any) -> None:
        self.count += 1


def test_an_unknown_scheduler_is_refused_at_stage_start() -> None:
    def sequential(opt: torch.optim.Optimizer) -> Any:
        lr_scheduler = torch.optim.lr_scheduler
        return lr_scheduler.SequentialLR(opt, [lr_scheduler.ConstantLR(opt, 0.5, total_iters=2),
                                               lr_scheduler.ExponentialLR(opt, 0.9)], [2])

    exp = sg.Experiment("seq", seed=0, model=TwoLayers(), criterion=nn.CrossEntropyLoss(),
                        optimizer=sg.optimizer(torch.optim.SGD, lr=0.1), scheduler=sequential)
    exp.add_stage("warm", num_epochs=3, loaders=_loaders(),
                  callbacks={"freeze": FreezeCallback("backbone", unfreeze_at_epoch=2)})
    batches = Batches()
    exp.stages[0].callbacks["batches"] = batches
    with pytest.raises(RunError) as caught:
        sg.run(exp, device="cpu", verbose=False)
    message = str(caught.value)
    assert ("stage 'warm', callback 'freeze': unfreeze_at_epoch cannot add a param group to "
            "the scheduler SequentialLR") in message
    assert "train the unfrozen model in a next stage with its own optimizer" in message
    assert batches.count == 0  # refused before any training


def test_run_params_record_the_patterns_given() -> None:
    """What MLflow and TensorBoard record as the experiment's parameters, before and after a
    run (when the callback holds the matched modules)."""
    from stagegraph.runtime.callbacks.run_params import experiment_params

    exp = _experiment(modules=["backbone.*", "backbone"], epochs=1)
    plan = sg.compile(exp, device="cpu", verbose=False)
    for _ in range(2):
        params = experiment_params(plan, exp)
        assert params["train.callbacks.freeze.modules"] == "['backbone.*', 'backbone']"
        assert params["train.callbacks.freeze.unfreeze_at_epoch"] == 3
        sg.run(exp, device="cpu", verbose=False)
