"""Warnings the runner gives while it runs: a train loader that yields no batch trains nothing."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from trace_helpers import loader

import stagegraph as sg
from stagegraph.runtime.errors import StagegraphWarning


def experiment(train: DataLoader) -> sg.Experiment:
    exp = sg.Experiment("empty", seed=0, model=lambda: nn.Linear(3, 2),
                        criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    exp.add_stage("train", num_epochs=2, loaders={"train": train, "valid": loader(4)})
    return exp


def run(exp: sg.Experiment) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sg.Runner(sg.compile(exp, device="cpu", verbose=False)).run()
    return [str(w.message) for w in seen if issubclass(w.category, StagegraphWarning)]


def test_a_train_loader_that_yields_no_batch_is_warned_about_each_epoch() -> None:
    three = TensorDataset(torch.randn(3, 3), torch.randint(0, 2, (3,)))
    empty = DataLoader(three, batch_size=4, drop_last=True)  # 3 samples, batches of 4: none
    assert run(experiment(empty)) == [
        f"stage 'train', epoch {epoch}: the train loader 'train' yielded no batch, so nothing "
        "was trained in this epoch (an empty dataset, or drop_last=True with fewer samples than "
        "batch_size?)" for epoch in (1, 2)]


def test_a_train_loader_with_batches_is_not_warned_about() -> None:
    exp = experiment(loader(4))
    assert run(exp) == []
