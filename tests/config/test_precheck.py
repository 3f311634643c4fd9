"""A schema error does not hide the `_target_` problems of the same file (config/precheck.py):
one validate reports both, each once, at its line:column."""

from __future__ import annotations

import sys
from pathlib import Path

from config_helpers import first_lines, problems


def test_schema_and_target_problems_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "parts.py").write_text("def loaders():\n    return {}\n", encoding="utf-8")
    found = problems(tmp_path, """
        experiment: demo
        optimizer: {_target_: parts.Adma, lr: 0.1, no_bias_weight_decay: true}
        loaders: {_target_: parts.loaders, _names_: [train, valid], batch: 3}
        defaults:
          callbacks:
            es: {_target_: EarlyStopingCallback, metric: loss}
        stages:
          train:
            num_epochs: three
          finetune:
            num_epochs: 2
        """)
    assert first_lines(found) == [
        "exp.yaml:2:23: error[SF810] parts has no 'Adma' (in parts.Adma).",
        "exp.yaml:3:61: error[SF811] parts.loaders does not accept the keyword argument 'batch'.",
        "exp.yaml:6:20: error[SF812] there is no built-in callback 'EarlyStopingCallback'. "
        "Did you mean 'EarlyStoppingCallback'?",
        "exp.yaml:9:17: error[SF803] 'num_epochs' of stages.train must be an integer, not "
        "'three'",
    ]


def test_a_valid_file_is_not_checked_twice(tmp_path: Path) -> None:
    (tmp_path / "parts.py").write_text("def loaders(size):\n    return {}\n", encoding="utf-8")
    found = problems(tmp_path, """
        experiment: demo
        loaders: {_target_: parts.loaders, sise: 3}
        stages:
          train: {}
        """)
    assert first_lines(found) == [
        "exp.yaml:2:21: error[SF810] parts.loaders needs the argument 'size', which is not given",
        "exp.yaml:2:36: error[SF811] parts.loaders does not accept the keyword argument 'sise'. "
        "Did you mean 'size'?",
    ]
    assert "parts" not in sys.modules
