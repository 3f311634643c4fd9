"""`stagegraph run`: compiles with the options, runs, and reports failures without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import FIXTURES, INVALID, cli

pytest.importorskip("torch")

TINY = str(FIXTURES / "exp_tiny_run.py")


def test_run_trains_and_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = cli(capsys, "run", TINY, "--device", "cpu", "--logdir", str(tmp_path / "run"))
    assert result.code == 0, result.err
    assert "[train] epoch 2/2" in result.text
    assert (tmp_path / "run").is_dir()


def test_run_prints_warnings_then_trains(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", f"{TINY}:with_holdout", "--quiet", "--check", "--device", "cpu")
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert lines[0].startswith("warning[SF506] stage 'train' > loader 'holdout': ")
    assert lines[2].startswith("running: experiment 'tiny' is valid: 0 error(s), 1 warning(s)")


def test_quiet_check_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = cli(capsys, "run", TINY, "--quiet", "--check", "--device", "cpu")
    assert result.code == 0, result.err
    assert "epoch" not in result.text


def test_experiment_device_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "plan", f"{TINY}:on_cpu")
    assert "device cpu" in result.out.splitlines()[0]
    result = cli(capsys, "plan", f"{TINY}:on_cpu", "--device", "auto")
    assert "device auto" in result.out.splitlines()[0]


def test_run_failure_says_where_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", f"{TINY}:failing", "--quiet", "--device", "cpu")
    assert result.code == 1
    assert result.err.splitlines()[0] == (
        "error: run failed at stage 'train', epoch 1, loader 'train', batch 2, callback "
        "'explode' (on_batch_end): ValueError: exploded on purpose")
    assert "Traceback" not in result.text


def test_run_failure_with_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", f"{TINY}:failing", "--quiet", "--device", "cpu", "--traceback")
    assert result.code == 1
    assert "Traceback" in result.err and "exploded on purpose" in result.err


def test_keyboard_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", f"{TINY}:interrupted", "--quiet", "--device", "cpu")
    assert result.code == 130
    assert "interrupted" in result.err and "Traceback" not in result.text


def test_a_plan_with_errors_does_not_run(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", INVALID)
    assert result.code == 1
    assert "error[SF402]" in result.err
    assert "not running: experiment 'broken' has errors" in result.err


def test_missing_device_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli(capsys, "run", TINY, "--quiet", "--device", "cuda")
    assert result.code == 1
    assert result.err.startswith("cannot run: ") and "Traceback" not in result.text


def test_a_catalyst_style_callback_validates_plans_and_runs(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = str(FIXTURES / "exp_catalyst_style.py")
    assert cli(capsys, "validate", spec).code == 0
    out = tmp_path / "plan.json"
    assert cli(capsys, "plan", spec, "-o", str(out)).code == 0
    stages = json.loads(out.read_text())["stages"]
    counters = [cb for stage in stages for cb in stage["callbacks"] if cb["name"] == "counter"]
    assert [(cb["scope"], cb["node"], cb["origin"]) for cb in counters] == [
        ("experiment", "master", "declared"), ("experiment", "master", "migrated")]
    result = cli(capsys, "run", spec, "--quiet", "--device", "cpu", "--logdir", str(tmp_path / "r"))
    assert result.code == 0, result.err


def test_a_stage_named_to_escape_the_logdir_fails_validate_and_run_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logdir = tmp_path / "a" / "b" / "run"
    exp = f"{TINY}:escaping"
    result = cli(capsys, "validate", exp, "--logdir", str(logdir))
    assert result.code == 1
    assert result.out.startswith("error[SF519] stage '../../x': the stage name '../../x' is not a "
                                 "safe file name: it contains '/' (a path separator)")
    assert "  hint: rename the stage, e.g. 'x'" in result.out
    result = cli(capsys, "run", exp, "--device", "cpu", "--logdir", str(logdir))
    assert result.code == 1 and "not running: experiment 'tiny' has errors" in result.err
    assert "epoch" not in result.out
    assert list(tmp_path.rglob("*")) == []  # nothing ran: no logdir, nothing beside it


def test_a_train_loader_that_yields_no_batch_is_warned_about(
        capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", f"{TINY}:empty_train", "--quiet", "--device", "cpu")
    assert result.code == 0, result.err
    assert result.err.splitlines() == [
        f"warning: stage 'train', epoch {epoch}: the train loader 'train' yielded no batch, so "
        "nothing was trained in this epoch (an empty dataset, or drop_last=True with fewer "
        "samples than batch_size?)" for epoch in (1, 2)]
