"""The defaults block merges into every stage, values located where they are written."""

from __future__ import annotations

from pathlib import Path

from config_helpers import load

CONFIG = """
    experiment: demo
    defaults:
      num_epochs: 2
      main_metric: accuracy
      optimizer: {_target_: torch.optim.Adam, lr: 0.01, weight_decay: 0.1}
      callbacks:
        accuracy: {_target_: AccuracyCallback, topk: [1, 3]}
        early: {_target_: EarlyStoppingCallback, patience: 2}
    stages:
      train:
        num_epochs: 5
        optimizer: {lr: 0.001}
        callbacks:
          early: {patience: 4}
      finetune:
        main_metric: null
        optimizer: {_target_: torch.optim.SGD, lr: 0.1}
        callbacks: {early: null, accuracy: {topk: [1]}}
    """


def test_a_stage_own_keys_win_and_mappings_merge_key_by_key(tmp_path: Path) -> None:
    stages = load(tmp_path, CONFIG).config["stages"]  # type: ignore[index]
    assert stages["train"] == {
        "num_epochs": 5, "main_metric": "accuracy",
        "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.001, "weight_decay": 0.1},
        "callbacks": {"accuracy": {"_target_": "AccuracyCallback", "topk": [1, 3]},
                      "early": {"_target_": "EarlyStoppingCallback", "patience": 4}}}
    # null removes a default; another _target_ replaces the default's arguments.
    assert stages["finetune"] == {
        "num_epochs": 2, "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1},
        "callbacks": {"accuracy": {"_target_": "AccuracyCallback", "topk": [1]}}}


def test_merged_values_keep_the_position_they_are_written_at(tmp_path: Path) -> None:
    document = load(tmp_path, CONFIG).document
    at = {path: f"{p.line}:{p.column}" for path, p in document.values.items()}
    assert at[("stages", "train", "num_epochs")] == "11:17"
    assert at[("stages", "finetune", "num_epochs")] == "3:15"  # from the defaults
    assert at[("stages", "train", "optimizer", "weight_decay")] == "5:67"
    assert at[("stages", "train", "optimizer", "lr")] == "12:21"
    assert ("stages", "finetune", "main_metric") not in at


def test_the_built_stages(tmp_path: Path) -> None:
    experiment = load(tmp_path, CONFIG)
    train, finetune = experiment.stages
    assert train.params["num_epochs"] == 5 and finetune.params["main_metric"] == "loss"
    assert list(train.callbacks) == ["accuracy", "early"]
    assert train.callbacks["early"].patience == 4
    assert list(finetune.callbacks) == ["accuracy"]
    assert finetune.callbacks["accuracy"].names == ("accuracy",)
