"""Optimizer options: per-layer groups, no decay on biases and norms, linear LR scaling, and
starting from the previous stage's optimizer state (runtime/optim.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime import BindingError, RunError
from stagegraph.runtime.optim import StageContext, build_optimizer, param_groups


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def groups(opt: torch.optim.Optimizer, model: nn.Module) -> list[tuple[list[str], float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [([names[id(p)] for p in g["params"]], g["lr"], g["weight_decay"])
            for g in opt.param_groups]


def test_layerwise_params_make_one_group_per_pattern_then_the_default_group() -> None:
    model = Net()
    opt = build_optimizer(model, "torch.optim.AdamW", {"lr": 1e-3, "weight_decay": 0.1},
                          layerwise_params={r"encoder\.0\.": {"lr": 1e-4}, "head": {"lr": 1e-2}})
    assert isinstance(opt, torch.optim.AdamW)
    assert groups(opt, model) == [
        (["encoder.0.weight", "encoder.0.bias"], 1e-4, 0.1),
        (["head.weight", "head.bias"], 1e-2, 0.1),
        (["encoder.1.weight", "encoder.1.bias"], 1e-3, 0.1),  # the default group
    ]


def test_the_first_matching_pattern_wins() -> None:
    model = Net()
    opt = build_optimizer(model, torch.optim.SGD, {"lr": 0.1},
                          layerwise_params={"encoder": {"lr": 0.01}, "head.w": {"lr": 0.5},
                                            "head": {"lr": 0.2}})
    assert [(names, lr) for names, lr, _ in groups(opt, model)] == [
        (["encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "encoder.1.bias"], 0.01),
        (["head.weight"], 0.5), (["head.bias"], 0.2)]


def test_no_bias_weight_decay_spares_biases_and_one_dimensional_parameters() -> None:
    model = Net()
    opt = build_optimizer(model, "torch.optim.SGD", {"lr": 0.1, "weight_decay": 1e-4},
                          layerwise_params={"head": {"lr": 0.2}}, no_bias_weight_decay=True)
    assert groups(opt, model) == [
        (["head.weight"], 0.2, 1e-4),
        (["head.bias"], 0.2, 0.0),
        (["encoder.0.weight"], 0.1, 1e-4),
        (["encoder.0.bias", "encoder.1.weight", "encoder.1.bias"], 0.1, 0.0),  # LayerNorm too
    ]


def test_lr_linear_scaling_scales_the_base_and_the_pattern_rates() -> None:
    model = Net()
    opt = build_optimizer(model, "torch.optim:Adam", {}, batch_size=32,
                          layerwise_params={"head": {"lr": 1e-2}},
                          lr_linear_scaling={"lr": 1e-3, "base_batch_size": 64})
    assert [lr for _, lr, _ in groups(opt, model)] == [1e-2 * 0.5, 1e-3 * 0.5]


@pytest.mark.parametrize(("options", "message"), [
    ({"layerwise_params": {"decoder": {"lr": 1.0}}},
     r"'decoder' match no parameter; .* encoder\.0\.weight"),
    ({"layerwise_params": {"enc": {"lr": 1.0}, "encoder": {"lr": 2.0}}},
     r"'encoder' match no parameter \(an earlier pattern takes"),
    ({"layerwise_params": {"head": {"momentum": 0.9}}},
     r"layerwise_params\['head'\]: torch\.optim\.adam\.Adam has no hyperparameter 'momentum'"),
    ({"layerwise_params": {"(": {"lr": 1.0}}}, r"'\(' is not a regular expression"),
    ({"layerwise_params": {"head": 0.1}}, r"layerwise_params\['head'\] must map"),
    ({"lr_linear_scaling": {"lr": 1e-3}}, r"must be \{'lr': base_lr, 'base_batch_size': n\}"),
    ({"lr_linear_scaling": {"lr": 1e-3, "base_batch_size": 0}}, "an int >= 1"),
    ({"lr_linear_scaling": {"lr": 1e-3, "base_batch_size": 8}},
     "needs batch_size= \\(the train loader's\\)"),
])
def test_option_errors_say_what_to_fix(options: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        build_optimizer(Net(), "torch.optim.Adam", {}, **options)


def test_lr_and_lr_linear_scaling_exclude_each_other_and_bad_targets_are_named() -> None:
    with pytest.raises(ValueError, match="give lr or lr_linear_scaling, not both"):
        sg.optimizer("torch.optim.Adam", lr=1e-3,
                     lr_linear_scaling={"lr": 1e-3, "base_batch_size": 8})
    with pytest.raises(ValueError, match=r"module .torch\.optim. has no .Adamm."):
        build_optimizer(Net(), "torch.optim.Adamm", {"lr": 1.0})
    with pytest.raises(ValueError, match=r"no_bias_weight_decay: .*Rprop has no weight_decay"):
        build_optimizer(Net(), "torch.optim.Rprop", {}, no_bias_weight_decay=True)


def test_param_groups_leave_empty_halves_out() -> None:
    model = nn.Linear(3, 1, bias=False)
    found = param_groups(list(model.named_parameters()), no_bias_weight_decay=True)
    assert [(g.pattern, g.decay, g.names) for g in found] == [(None, True, ("weight",))]


def test_the_factory_called_outside_a_run_says_what_it_lacks() -> None:
    factory = sg.optimizer(torch.optim.Adam, lr_linear_scaling={"lr": 1e-3,
                                                                "base_batch_size": 8})
    with pytest.raises(ValueError, match="built outside a run"):
        factory(Net())
    with pytest.raises(ValueError, match=r"load_from_previous_stage .* only a run has"):
        sg.optimizer(torch.optim.Adam, load_from_previous_stage=True)(Net())
    assert factory.for_stage(Net(), StageContext("s", batch_size=4)).param_groups[0]["lr"] == (
        1e-3 * 4 / 8)


# --- in a run ------------------------------------------------------------------------------------
def _loaders(batch_size: int = 8) -> dict[str, Any]:
    def data(n: int, seed: int) -> TensorDataset:
        x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
        return TensorDataset(x, (x[:, 0] > x[:, 1]).long())

    return {"train": lambda: DataLoader(data(32, 1), batch_size=batch_size, shuffle=True),
            "valid": lambda: DataLoader(data(8, 2), batch_size=4)}


class LastOptimizer(sg.Callback):
    """Keeps each stage's optimizer, to look at after the run."""

    scope = sg.CallbackScope.experiment

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    def on_stage_end(self, runner: Any) -> None:
        self.seen[runner.stage_name] = runner.optimizer


def _run(exp: sg.Experiment, logdir: Path | None = None, **runner: Any) -> Any:
    plan = sg.compile(exp, device="cpu", verbose=False,
                      logdir=None if logdir is None else str(logdir))
    return sg.Runner(plan, **runner).run()


def test_the_runner_scales_by_the_train_loaders_batch_size() -> None:
    keeper = LastOptimizer()
    exp = sg.Experiment("scaled", model=Net, criterion=nn.CrossEntropyLoss,
                        optimizer=sg.optimizer("torch.optim.SGD", lr_linear_scaling={
                            "lr": 0.1, "base_batch_size": 32}))
    exp.add_stage("train", num_epochs=1, loaders=_loaders(batch_size=8),
                  callbacks={"keeper": keeper})
    _run(exp)
    assert keeper.seen["train"].param_groups[0]["lr"] == pytest.approx(0.1 * 8 / 32)


def _two_stages(epochs: tuple[int, int], carry: bool, **second: Any) -> sg.Experiment:
    exp = sg.Experiment("carry", seed=7, model=Net, criterion=nn.CrossEntropyLoss,
                        optimizer=sg.optimizer(torch.optim.Adam, lr=0.01))
    exp.add_stage("first", num_epochs=epochs[0], loaders=_loaders())
    if epochs[1]:
        second.setdefault("optimizer", sg.optimizer(torch.optim.Adam, lr=0.01,
                                                    load_from_previous_stage=carry))
        exp.add_stage("second", num_epochs=epochs[1], loaders=_loaders(), **second)
    return exp


def _weights(runner: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_carrying_adam_state_over_equals_one_longer_stage_bit_for_bit() -> None:
    one = _weights(_run(_two_stages((3, 0), carry=False)))
    carried = _weights(_run(_two_stages((2, 1), carry=True)))
    fresh = _weights(_run(_two_stages((2, 1), carry=False)))
    assert _same(one, carried)
    assert not _same(one, fresh)  # a fresh Adam restarts its moments: the test can tell


def test_the_new_stage_keeps_its_own_hyperparameters() -> None:
    keeper = LastOptimizer()
    exp = _two_stages((1, 1), carry=True, callbacks={"keeper": keeper},
                      optimizer=sg.optimizer(torch.optim.Adam, lr=0.003,
                                             load_from_previous_stage=True))
    _run(exp)
    second = keeper.seen["second"]
    assert second.param_groups[0]["lr"] == 0.003
    steps = {int(s["step"]) for s in second.state.values()}
    assert steps == {8}  # 4 batches in each of the two epochs


def test_carry_over_errors_name_both_stages() -> None:
    exp = _two_stages((1, 1), carry=True, optimizer=sg.optimizer(
        torch.optim.Adam, lr=0.01, layerwise_params={"head": {"lr": 0.1}},
        load_from_previous_stage=True))
    with pytest.raises(RunError) as caught:
        _run(exp)
    text = str(caught.value.__cause__)
    assert isinstance(caught.value.__cause__, BindingError)
    assert "stage 'second' loads the optimizer state of stage 'first'" in text
    assert "'first' has 1 group(s)" in text and "'second' has 2 group(s)" in text

    alone = sg.Experiment("alone", model=Net, criterion=nn.CrossEntropyLoss,
                          optimizer=sg.optimizer(torch.optim.Adam, lr=0.01,
                                                 load_from_previous_stage=True))
    alone.add_stage("only", num_epochs=1, loaders=_loaders())
    with pytest.raises(RunError, match="no earlier stage had an optimizer"):
        _run(alone)


def _with_infer(stop_at: int | None = None) -> sg.Experiment:
    exp = sg.Experiment("infer-between", seed=5, model=Net, criterion=nn.CrossEntropyLoss,
                        optimizer=sg.optimizer(torch.optim.Adam, lr=0.01))
    exp.add_stage("first", num_epochs=2, loaders=_loaders(), callbacks={"stop": StopAt(stop_at)})
    exp.add_stage("infer", num_epochs=1, loaders={"infer": _loaders()["valid"]})
    exp.add_stage("second", num_epochs=2, loaders=_loaders(), optimizer=sg.optimizer(
        torch.optim.Adam, lr=0.01, load_from_previous_stage=True))
    return exp


class StopAt(sg.Callback):
    """Raises at the start of global epoch ``at`` (a kill, in process)."""

    scope = sg.CallbackScope.experiment

    def __init__(self, at: int | None) -> None:
        super().__init__()
        self.at = at

    def on_epoch_start(self, runner: Any) -> None:
        if runner.global_epoch == self.at:
            raise KeyError("stop")


@pytest.mark.parametrize("stop_at", [3, 4, 5])  # in the infer stage, at the second's start, in it
def test_resuming_keeps_the_carried_state_bit_for_bit(tmp_path: Path, stop_at: int) -> None:
    expected = _weights(_run(_with_infer(), tmp_path / "whole"))
    with pytest.raises(RunError):
        _run(_with_infer(stop_at), tmp_path / "resumed")
    resumed = _run(_with_infer(), tmp_path / "resumed", resume=True)
    assert _same(expected, _weights(resumed))


class Kept(sg.Callback):
    """Records, at each stage start, the stage whose optimizer state the runner keeps."""

    scope = sg.CallbackScope.experiment

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[str, str | None] = {}

    def on_stage_start(self, runner: Any) -> None:
        kept = runner.kept_optimizer
        self.kept[runner.stage_name] = None if kept is None else kept.stage


def test_the_state_is_kept_only_while_a_later_stage_needs_it() -> None:
    exp = _with_infer()
    exp.stages[0].callbacks["kept"] = kept = Kept()
    runner = _run(exp)
    assert kept.kept == {"first": None, "infer": "first", "second": "first"}
    assert runner.kept_optimizer is None
    plain = _two_stages((1, 1), carry=False, callbacks={"kept": Kept()})
    _run(plain)
    assert plain.stages[1].callbacks["kept"].kept == {"second": None}
