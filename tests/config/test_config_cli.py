"""Config files through the CLI: diagnostics at file:line:col, --set, schema --config, and the
effective config saved beside the plan and compared on --resume."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from config_helpers import FIXTURES, write

from stagegraph.cli import main

CONFIG = """
    experiment: demo
    model: {_target_: parts.model}
    criterion: {_target_: torch.nn.CrossEntropyLoss}
    optimizer: {_target_: torch.optim.SGD, lr: 0.1}
    defaults:
      callbacks:
        early: {_target_: EarlyStoppingCallback, metric: f1}
    stages:
      train:
        main_metric: acuracy
        loaders:
          train: {_target_: parts.loader}
          valid: {_target_: parts.loader}
          holdout: {_target_: parts.loader}
        callbacks:
          accuracy: {_target_: AccuracyCallback, after: [nothing]}
    """


PARTS = "def model(): ...\n\n\ndef loader(): ...\n"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_compiler_diagnostics_point_at_what_the_file_says(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, CONFIG)
    write(tmp_path, PARTS, "parts.py")
    code, out = run(capsys, "validate", "exp.yaml")
    assert code == 1
    located = [line.split(" stage ")[0] for line in out.splitlines() if line.startswith("exp.")]
    assert located == [
        "exp.yaml:10:18: error[SF503]",  # the stage parameter's value
        "exp.yaml:14:7: warning[SF506]",  # the loader's key
        "exp.yaml:16:7: error[SF401]",  # the callback's key
        "exp.yaml:7:5: error[SF501]",  # a callback the defaults give: where they give it
        "exp.yaml:7:5: error[SF516]",
    ]
    code, out = run(capsys, "validate", "exp.yaml", "--format", "json")
    items = json.loads(out)
    assert [(i["code"], i["file"], i["line"], i["column"]) for i in items][:2] == [
        ("SF503", "exp.yaml", 10, 18), ("SF506", "exp.yaml", 14, 7)]
    assert items[0]["location"] == {"stage": "train", "callback": None, "loader": None,
                                    "param": "main_metric", "key": None}


def test_config_problems_in_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "experiment: demo\nstages:\n  train:\n    num_epoch: 3\n")
    code, out = run(capsys, "validate", "exp.yaml")
    assert code == 1 and out.startswith(
        "exp.yaml:4:5: error[SF804] unknown key 'num_epoch' in stages.train. Did you mean "
        "'num_epochs'?\n")
    code, out = run(capsys, "validate", "exp.yaml", "--format", "json")
    (item,) = json.loads(out)
    assert (item["code"], item["file"], item["line"], item["column"]) == (
        "SF804", "exp.yaml", 4, 5)


def test_a_bad_set_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, CONFIG)
    write(tmp_path, PARTS, "parts.py")
    code, out = run(capsys, "plan", "exp.yaml", "--set", "stages.train.main_metrc=accuracy")
    assert code == 2
    assert out.startswith("exp.yaml:9:3: error[SF808] --set stages.train.main_metrc=accuracy: "
                          "it has no setting 'main_metrc'. Did you mean 'main_metric'?")
    code, out = run(capsys, "explain", "exp.yaml", "--stage", "train", "a", "b",
                    "--set", "stages.train.num_epochs=-1")
    assert code == 2 and "error[SF809] (set by --set stages.train.num_epochs=-1)" in out
    code, out = run(capsys, "validate", "exp.yaml", "--set", "stages.train.main_metric=accuracy")
    assert code == 1 and "SF503" not in out  # the override fixed it
    (tmp_path / "exp.py").write_text("import stagegraph\n", encoding="utf-8")
    code, out = run(capsys, "validate", "exp.py", "--set", "seed=1")
    assert code == 2 and "--set changes a config file, and 'exp.py' is a Python file" in out


def test_a_json_config_validates_like_a_yaml_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "validate", str(FIXTURES / "tiny.json"))
    assert code == 0 and "ok: experiment 'tiny-json' has no problems" in out, out


def test_schema_prints_the_plan_format_or_the_config_format(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "schema")
    assert code == 0 and json.loads(out)["title"] == "ExecutionPlan"
    code, out = run(capsys, "schema", "--config")
    schema = json.loads(out)
    assert code == 0 and schema["title"] == "stagegraph experiment config"
    assert schema["properties"]["stages"]["description"]


def test_the_effective_config_is_saved_and_resume_compares_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("tiny.yaml", "tiny_parts.py"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    try:
        code, out = run(capsys, "run", "tiny.yaml", "--logdir", "log", "--quiet",
                        "--set", "optimizer.lr=0.2")
        assert code == 0, out
        import torch

        latest = sorted((tmp_path / "log" / "checkpoints" / "resume").glob("epoch-*.pth"))[-1]
        saved = torch.load(latest, weights_only=False)["resume"]["config"]
        assert saved["optimizer"] == {"_target_": "torch.optim.SGD", "lr": 0.2}
        code, out = run(capsys, "run", "tiny.yaml", "--logdir", "log", "--quiet", "--resume",
                        "--set", "optimizer.lr=0.2")
        assert code == 0, out
        code, out = run(capsys, "run", "tiny.yaml", "--logdir", "log", "--quiet", "--resume",
                        "--set", "optimizer.lr=0.5")
        assert code == 1
        assert ("error[SF815] param 'optimizer.lr': config changed from 0.2 to 0.5" in out), out
        code, out = run(capsys, "run", "tiny.yaml", "--logdir", "log", "--quiet", "--resume",
                        "--set", "optimizer.lr=0.5", "--allow-plan-change")
        assert code == 0 and "warning[SF815]" in out, out
    finally:
        sys.modules.pop("tiny_parts", None)
