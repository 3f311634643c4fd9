"""Schema problems are located at the key or value they are about (config/validation.py)."""

from __future__ import annotations

from pathlib import Path

from config_helpers import first_lines, problems


def test_a_wrong_type_is_located_at_the_value(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        seed: "1"
        stages:
          train:
            num_epochs: three
            precision: fp16
            after: 3
        """)
    assert first_lines(found) == [
        "exp.yaml:2:7: error[SF803] seed must be an integer, not '1'",
        "exp.yaml:5:17: error[SF803] 'num_epochs' of stages.train must be an integer, not "
        "'three'",
        "exp.yaml:6:16: error[SF803] 'precision' of stages.train must be one of 'fp32', 'amp' "
        "or 'bf16', not 'fp16'",
        "exp.yaml:7:12: error[SF803] 'after' of stages.train must be a string or a list, not 3",
    ]
    assert "hint: num_epochs: how many epochs the stage runs" in found[1]


def test_a_value_out_of_range(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        stages: {train: {num_epochs: 0}}
        """)
    assert first_lines(found) == [
        "exp.yaml:2:30: error[SF803] 'num_epochs' of stages.train must be greater than or equal "
        "to 1, not 0"]


def test_an_unknown_key_is_located_at_the_key_with_a_did_you_mean(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        stages:
          train:
            num_epoch: 3
            callbacks:
              acc: {_target_: AccuracyCallback}
        optimiser: {_target_: torch.optim.Adam}
        """)
    assert first_lines(found) == [
        "exp.yaml:4:5: error[SF804] unknown key 'num_epoch' in stages.train. Did you mean "
        "'num_epochs'?",
        "exp.yaml:7:1: error[SF804] unknown key 'optimiser' in the file. Did you mean "
        "'optimizer'?",
    ]
    assert "hint: stages.train takes: num_epochs, main_metric" in found[0]


def test_a_missing_key_is_located_at_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        stages:
          train:
            optimizer: {lr: 0.1}
        """)
    assert first_lines(found) == [
        "exp.yaml:1:1: error[SF805] the file has no 'experiment', which is required",
        "exp.yaml:3:5: error[SF805] stages.train.optimizer has no '_target_', which is required",
    ]
    assert "hint: add experiment: the experiment's name" in found[0]


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    found = problems(tmp_path, "- experiment\n")
    assert first_lines(found) == ["exp.yaml:1:1: error[SF803] the file must be a mapping, not "
                                  "['experiment']"]


def test_a_loader_mapping_or_factory(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        loaders: {_target_: data.loaders, _names_: train}
        stages:
          train:
            loaders: {train: 3}
        """)
    lines = first_lines(found)
    # What 'data' is close to depends on the installed packages (pandas brings 'tzdata').
    lines[0] = lines[0].split(" Did you mean")[0]
    assert lines == [
        "exp.yaml:2:21: error[SF810] no module named 'data' (in data.loaders).",
        "exp.yaml:2:44: error[SF803] loaders._names_ must be a list, not 'train'",
        "exp.yaml:5:22: error[SF803] 'train' of stages.train.loaders must be a mapping, not 3",
    ]
