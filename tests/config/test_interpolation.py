"""${...} names another value of the config; its mistakes are located (config/interpolation.py)."""

from __future__ import annotations

from pathlib import Path

from config_helpers import first_lines, load, problems


def test_a_whole_reference_keeps_the_type_and_text_gets_str(tmp_path: Path) -> None:
    config = load(tmp_path, """
        experiment: demo
        defaults:
          num_epochs: 4
        stages:
          train:
            batch_keys: [features, targets]
            main_metric: "loss"
            callbacks:
              acc: {_target_: AccuracyCallback, topk: [1, "${stages.train.num_epochs}"]}
          finetune:
            num_epochs: ${stages.train.num_epochs}
            batch_keys: ${stages.train.batch_keys}
            main_metric: "${stages.train.main_metric}"
            valid_loader: valid_${stages.train.num_epochs}
            callbacks:
              acc: {_target_: AccuracyCallback, topk: ["${stages.train.callbacks.acc.topk.0}"]}
        """).config
    assert config is not None
    finetune = config["stages"]["finetune"]
    assert finetune["num_epochs"] == 4  # merged from the defaults, then referenced
    assert finetune["batch_keys"] == ["features", "targets"]
    assert finetune["valid_loader"] == "valid_4"
    assert config["stages"]["train"]["callbacks"]["acc"]["topk"] == [1, 4]
    assert finetune["callbacks"]["acc"]["topk"] == [1]


def test_an_escaped_reference_is_text(tmp_path: Path) -> None:
    config = load(tmp_path, r"""
        experiment: 'cost \${5}'
        stages: {train: {}}
        """).config
    assert config is not None and config["experiment"] == "cost ${5}"


def test_a_missing_path_is_located_with_a_did_you_mean(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        stages:
          train:
            num_epochs: 3
          finetune:
            num_epochs: ${stages.trian.num_epochs}
            main_metric: best_${stages.train.callbacks}
        """)
    assert first_lines(found) == [
        "exp.yaml:6:17: error[SF806] ${stages.trian.num_epochs}: there is no 'trian' in "
        "stages. Did you mean 'train'?",
        "exp.yaml:7:18: error[SF806] ${stages.train.callbacks}: there is no 'callbacks' in "
        "stages.train.",
    ]


def test_a_cycle_is_located_and_named(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        seed: ${stages.train.num_epochs}
        stages:
          train:
            num_epochs: ${seed}
        """)
    assert first_lines(found) == [
        "exp.yaml:2:7: error[SF807] '${stages.train.num_epochs}' refers back to itself: seed -> "
        "stages.train.num_epochs -> seed"]


def test_a_mapping_cannot_go_inside_text(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: x${stages}
        stages: {train: {}}
        """)
    assert first_lines(found) == [
        "exp.yaml:1:13: error[SF806] ${stages} names a dict, which cannot be put inside text; "
        "use it as the whole value"]
