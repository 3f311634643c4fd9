"""``fast_path:`` in a config file: per loader in a stage, located problems."""

from __future__ import annotations

from pathlib import Path

from config_helpers import first_lines, load, problems

import stagegraph as sg
from stagegraph.config.positions import locate

FAST_PATH = """
    experiment: demo
    fast_path: false
    model: {_target_: torch.nn.Identity}
    criterion: {_target_: torch.nn.CrossEntropyLoss}
    optimizer: {_target_: torch.optim.SGD, lr: 0.1}
    loaders: {train: {_target_: builtins.list}, valid: {_target_: builtins.list}}
    stages:
      train: {fast_path: {train: true}}
      tune:
        fast_path: {valdi: false}
    """


def test_fast_path_per_loader_reaches_the_plan_and_a_misspelt_loader_is_located(
        tmp_path: Path) -> None:
    experiment = load(tmp_path, FAST_PATH)
    plan = sg.compile(experiment)
    assert [{lp.name: lp.fast_path for lp in s.loaders} for s in plan.stages] == [
        {"train": True, "valid": False}, {"train": False, "valid": False}]
    located = [d for d in locate(plan.diagnostics, experiment.document) if d.code == "SF531"]
    assert [str(d).splitlines()[0].replace(f"{tmp_path}/", "") for d in located] == [
        "exp.yaml:10:17: error[SF531] stage 'tune' > loader 'valdi' > param 'fast_path': "
        "fast_path names 'valdi', which is not a loader of stage 'tune'. Did you mean 'valid'?"]


def test_fast_path_per_loader_must_map_names_to_booleans(tmp_path: Path) -> None:
    found = problems(tmp_path, FAST_PATH.replace("{train: true}", "{train: 1}"))
    assert first_lines(found) == [
        "exp.yaml:8:30: error[SF803] 'train' of stages.train.fast_path must be true or false, "
        "not 1"]
