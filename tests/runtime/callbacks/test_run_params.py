"""run_params: metric names as the trackers chart them, learning rates, flat parameters."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

import stagegraph as sg
from stagegraph.config.factories import Target
from stagegraph.runtime.callbacks import EarlyStoppingCallback
from stagegraph.runtime.callbacks.run_params import (
    MAX_VALUE,
    describe,
    experiment_params,
    learning_rates,
    metric_tag,
    split_metric,
)


def test_metric_names_group_by_metric_then_loader() -> None:
    loaders = ("train", "valid", "valid_2")
    assert metric_tag("train_loss", loaders) == "loss/train"
    assert metric_tag("valid_2_accuracy01", loaders) == "accuracy01/valid_2"  # longest first
    assert metric_tag("valid_accuracy01", loaders) == "accuracy01/valid"
    assert metric_tag("lr", loaders) == "lr"
    assert split_metric("train__timer/batch_time", loaders) == ("train", "_timer/batch_time")
    assert split_metric("trainer_x", loaders) == (None, "trainer_x")


def test_learning_rates_of_every_param_group() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    groups: list[dict[str, Any]] = [{"params": model[0].parameters(), "lr": 0.5},
                                    {"params": model[1].parameters()}]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    assert learning_rates(optimizer) == {"lr/group0": 0.5, "lr/group1": 0.1}
    assert learning_rates(None) == {}


def test_components_are_described_by_target_and_arguments() -> None:
    assert describe(Target("torch.optim.Adam", {"lr": 0.01})) == ("torch.optim.Adam",
                                                                  {"lr": 0.01})
    assert describe(functools.partial(torch.optim.SGD, lr=0.1)) == ("torch.optim.sgd.SGD",
                                                                    {"lr": 0.1})
    assert describe(nn.CrossEntropyLoss) == ("torch.nn.modules.loss.CrossEntropyLoss", {})
    assert describe(nn.CrossEntropyLoss()) == ("torch.nn.modules.loss.CrossEntropyLoss", {})


def test_experiment_params_are_flat_scalars() -> None:
    exp = sg.Experiment("flat", seed=7, model=lambda: nn.Linear(2, 2),
                        criterion=nn.CrossEntropyLoss(),
                        optimizer=Target("torch.optim.SGD", {"lr": 0.1, "nested": {"a": 1}}))
    long_name: Any = "x" * 2000
    exp.add_stage("train", num_epochs=3, loaders={"train": [], "valid": []},
                  callbacks={"early_stopping": EarlyStoppingCallback(patience=4),
                             "long": EarlyStoppingCallback(metric=long_name)})
    params = experiment_params(sg.compile(exp), exp)
    assert params["seed"] == 7 and params["experiment"] == "flat"
    assert params["train.num_epochs"] == 3 and params["train.loaders"] == "train,valid"
    assert params["train.optimizer"] == "torch.optim.SGD"
    assert params["train.optimizer.lr"] == 0.1 and params["train.optimizer.nested.a"] == 1
    assert str(params["train.model"]).endswith("<lambda>")
    assert params["train.callbacks.early_stopping"] == "EarlyStoppingCallback"
    assert params["train.callbacks.early_stopping.patience"] == 4
    assert params["train.callbacks.criterion.metric_key"] == "loss"  # a default's plan params
    assert len(str(params["train.callbacks.long.metric"])) == MAX_VALUE
    assert all(isinstance(v, (int, float, str, bool)) for v in params.values())
    assert experiment_params(sg.compile(exp)).keys() < params.keys()  # no live objects
