"""`stagegraph convert catalyst CONFIG [-o OUT]`: output, diagnostics on stderr, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_helpers import cli

FIXTURE = str(Path(__file__).parent.parent / "fixtures" / "catalyst" / "config.yml")


def test_convert_writes_the_config_and_lists_the_todos(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "digits.yaml"
    result = cli(capsys, "convert", "catalyst", FIXTURE, "-o", str(out), "--name", "digits")
    assert result.code == 0, result.err
    assert result.out == ""
    data = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert data["experiment"] == "digits" and list(data["stages"]) == ["warmup", "train", "infer"]
    assert f"{FIXTURE}:93:19: warning[SF853] AUCCallback has no stagegraph equivalent" in result.err
    assert result.err.splitlines()[-1] == (
        f"converted {FIXTURE} -> {out}: 9 warning(s), 6 note(s); review its TODO notes, then: "
        f"stagegraph validate {out}")


def test_without_output_the_config_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "convert", "catalyst", FIXTURE, "--format", "json")
    assert result.code == 0
    assert yaml.safe_load(result.out)["experiment"] == "config"
    problems = json.loads(result.err)
    assert {p["code"] for p in problems} >= {"SF851", "SF852", "SF853", "SF855", "SF856"}
    assert problems[0]["location"] == {"file": FIXTURE, "line": 5, "column": 10}


def test_strict_fails_on_warnings_and_force_overwrites(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "exp.yaml"
    out.write_text("old\n", encoding="utf-8")
    refused = cli(capsys, "convert", "catalyst", FIXTURE, "-o", str(out))
    assert refused.code == 2 and "exists: pass --force to overwrite it" in refused.err
    assert out.read_text(encoding="utf-8") == "old\n"
    strict = cli(capsys, "convert", "catalyst", FIXTURE, "-o", str(out), "--force", "--strict")
    assert strict.code == 1 and out.read_text(encoding="utf-8").startswith("# Converted from")


def test_a_file_that_is_not_a_catalyst_config_is_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "exp.yaml"
    source.write_text("experiment: x\nstages: {train: {num_epochs: 1}}\n", encoding="utf-8")
    out = tmp_path / "out.yaml"
    result = cli(capsys, "convert", "catalyst", str(source), "-o", str(out))
    assert result.code == 1 and not out.exists()
    assert f"{source}:1:1: error[SF850] this is a stagegraph config already" in result.err
    assert result.err.splitlines()[-1] == f"stagegraph: {source} was not converted"
    missing = cli(capsys, "convert", "catalyst", str(tmp_path / "nope.yml"))
    assert missing.code == 1 and "error[SF801] cannot read the file" in missing.err
    wrong = cli(capsys, "convert", "hydra", FIXTURE)
    assert wrong.code == 2 and "invalid choice: 'hydra'" in wrong.err
