"""--set PATH=VALUE: applied before the defaults merge, checked against the schema, located."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_helpers import first_lines, load, problems

from stagegraph.loading import LoadError

CONFIG = """
    experiment: demo
    optimizer: {_target_: torch.optim.Adam, lr: 0.01}
    defaults:
      num_epochs: 2
    stages:
      train:
        num_epochs: 5
        callbacks:
          accuracy: {_target_: AccuracyCallback, topk: [1, 3]}
      finetune: {}
    """


def test_overrides_change_values_of_any_type(tmp_path: Path) -> None:
    config = load(tmp_path, CONFIG, overrides=[
        "stages.train.num_epochs=7", "optimizer.lr=1e-4", "defaults.num_epochs=3",
        "stages.train.callbacks.accuracy.topk=[1, 5]", "stages.finetune.main_metric=accuracy",
        "stages.train.callbacks.early={_target_: EarlyStoppingCallback, patience: 2}"]).config
    assert config is not None
    assert config["optimizer"] == {"_target_": "torch.optim.Adam", "lr": 0.0001}
    train, finetune = config["stages"]["train"], config["stages"]["finetune"]
    assert train["num_epochs"] == 7 and finetune["num_epochs"] == 3
    assert train["callbacks"]["accuracy"]["topk"] == [1, 5]
    assert list(train["callbacks"]) == ["accuracy", "early"]
    assert finetune["main_metric"] == "accuracy"


def test_a_bad_path_is_a_located_usage_error_with_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as raised:
        load(tmp_path, CONFIG, overrides=["stages.trian.num_epochs=3", "optimiser.lr=1",
                                          "stages.train.num_epochz=3", "seed.value=1", "seed"])
    assert raised.value.exit_code == 2
    found = [str(p).replace(f"{tmp_path}/", "") for p in raised.value.problems]
    assert first_lines(found) == [
        "exp.yaml: error[SF808] --set seed: expected KEY.KEY=VALUE",
        "exp.yaml:1:1: error[SF808] --set optimiser.lr=1: the file has no setting 'optimiser'. "
        "Did you mean 'optimizer'?",
        "exp.yaml:1:1: error[SF808] --set seed.value=1: 'value' goes into a plain value",
        "exp.yaml:5:1: error[SF808] --set stages.trian.num_epochs=3: there is no 'trian' to "
        "change. Did you mean 'train'?",
        "exp.yaml:6:3: error[SF808] --set stages.train.num_epochz=3: it has no setting "
        "'num_epochz'. Did you mean 'num_epochs'?",
    ]
    assert "hint: stages has: train, finetune" in found[3]


def test_a_bad_value_is_located_where_it_replaces_one(tmp_path: Path) -> None:
    found = problems(tmp_path, CONFIG, overrides=[
        "stages.train.num_epochs=five", "stages.finetune.precision=fp16", "seed=[1"])
    assert first_lines(found) == [
        "exp.yaml: error[SF809] --set seed=[1: the value '[1' is not a YAML value (expected ',' "
        "or ']', but got '<stream end>')",
    ]
    found = problems(tmp_path, CONFIG, overrides=[
        "stages.train.num_epochs=five", "stages.finetune.precision=fp16"])
    assert first_lines(found) == [
        "exp.yaml:7:17: error[SF809] (set by --set stages.train.num_epochs=five) 'num_epochs' of "
        "stages.train must be an integer, not 'five'",
        "exp.yaml:10:13: error[SF809] (set by --set stages.finetune.precision=fp16) 'precision' "
        "of stages.finetune must be one of 'fp32', 'amp' or 'bf16', not 'fp16'",
    ]
