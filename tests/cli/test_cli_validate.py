"""`stagegraph validate --strict | --explain CODE | --format json` (stagegraph/cli/validate.py),
and the warnings and notes `stagegraph run` prints before it trains."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from cli_helpers import FIXTURES, INVALID, VALID, cli

from stagegraph import launch
from stagegraph.cli import run as cli_run
from stagegraph.compiler.rules import RULES

WARNED = str(FIXTURES / "exp_warnings.py")
SF506 = ("warning[SF506] stage 'train' > loader 'holdout': loader 'holdout' starts with none of "
         "'train', 'valid', 'infer'")


# --- --strict --------------------------------------------------------------------------------
def test_warnings_alone_pass(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", WARNED)
    assert result.code == 0
    assert result.out.startswith(SF506)
    assert result.out.splitlines()[-1].startswith(
        "experiment 'warned' is valid: 0 error(s), 1 warning(s) (1 stage(s), ")


def test_strict_counts_warnings_as_errors_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", WARNED, "--strict")
    assert result.code == 1
    assert result.out.startswith(SF506)
    assert result.out.splitlines()[-1].startswith(
        "experiment 'warned' fails --strict, which counts warnings as errors: 0 error(s), "
        "1 warning(s) (1 stage(s), ")


def test_strict_json_exits_1_on_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", WARNED, "--strict", "--format", "json")
    assert result.code == 1
    assert [d["code"] for d in json.loads(result.out)] == ["SF506"]


@pytest.mark.parametrize(("exp", "code", "last"), [
    (VALID, 0, "ok: experiment 'fixture' has no problems"),
    (INVALID, 1, "experiment 'broken' has errors: "),
    (f"{WARNED}:noted", 0, "experiment 'warned' is valid: 0 error(s), 0 warning(s), 1 note(s)"),
    (f"{WARNED}:allowed", 0, "ok: experiment 'warned' has no problems"),
])
def test_strict_passes_what_has_no_warnings(capsys: pytest.CaptureFixture[str], exp: str,
                                            code: int, last: str) -> None:
    result = cli(capsys, "validate", exp, "--strict")
    assert result.code == code
    assert result.out.splitlines()[-1].startswith(last)


def test_notes_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", f"{WARNED}:noted")
    assert result.code == 0
    assert result.out.startswith("info[SF506] stage 'train' > loader 'holdout': ")


# --- --format json ---------------------------------------------------------------------------
def test_json_gives_each_diagnostics_level_and_its_codes_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    (item,) = json.loads(cli(capsys, "validate", WARNED, "--format", "json").out)
    assert (item["severity"], item["default_level"]) == ("warning", "warning")
    (item,) = json.loads(cli(capsys, "validate", f"{WARNED}:noted", "--format", "json").out)
    assert (item["severity"], item["default_level"]) == ("info", "warning")


def test_json_of_a_load_error_has_a_default_level(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", str(FIXTURES / "missing.py"), "--format", "json")
    (item,) = json.loads(result.out)
    assert (item["code"], item["severity"], item["default_level"]) == ("SF001", "error", "error")


# --- --explain CODE --------------------------------------------------------------------------
def test_explain_a_code_that_can_be_changed(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", "--explain", "SF301")
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[0] == f"SF301: {RULES['SF301'].summary}"
    assert "  level:    error by default; it can be changed" in lines
    assert "  found by: migration" in lines
    assert " ".join(line.strip() for line in lines).count(RULES["SF301"].fix) == 1
    assert "  a callback:      MyCallback(..., lints={'SF301': 'allow'})" in lines
    assert ("  a stage:         experiment.add_stage('train', ..., lints={'SF301': 'allow'})"
            in lines)
    assert ("  the experiment:  stagegraph.Experiment('name', ..., lints={'SF301': 'allow'})"
            in lines)
    assert lines[-1] == "Documented with an example: docs/diagnostics.md#sf301"


def test_explain_a_fixed_code(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", "--explain", "SF402")
    assert result.code == 0
    assert "  level:    error; fixed, because the plan could not run at all" in result.out
    assert "Its level cannot be changed: a lints setting naming it is an error (SF111)." in \
        result.out
    assert "lints=" not in result.out


@pytest.mark.parametrize("code", list(RULES))
def test_explain_every_code(capsys: pytest.CaptureFixture[str], code: str) -> None:
    result = cli(capsys, "validate", "--explain", code)
    assert result.code == 0
    assert result.out.startswith(f"{code}: {RULES[code].summary}\n")
    assert all(len(line) <= 100 for line in result.out.splitlines()), "wrapped at 100 columns"


@pytest.mark.parametrize("spelling", ["sf107", "107", " SF107 "])
def test_explain_accepts_loose_spellings(capsys: pytest.CaptureFixture[str],
                                         spelling: str) -> None:
    assert cli(capsys, "validate", "--explain", spelling).out.startswith("SF107: ")


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", "--explain", "SF506", "--format", "json")
    assert json.loads(result.out) == {
        "code": "SF506", "summary": RULES["SF506"].summary, "default_level": "warning",
        "fixed": False, "fix": RULES["SF506"].fix, "group": "checks before running"}


def test_explain_an_unknown_code_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", "--explain", "SF3O1")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("usage: stagegraph validate")
    assert ("stagegraph validate: error: --explain: no diagnostic code 'SF3O1'. Did you mean "
            f"'SF301'? Codes run from SF001 to {max(RULES)}") in result.err
    result = cli(capsys, "validate", "--explain", "SF999")
    assert result.code == 2 and "Did you mean" not in result.err


def test_explain_takes_no_exp_and_validate_needs_one(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", VALID, "--explain", "SF301")
    assert result.code == 2 and "--explain SF301 takes no EXP" in result.err
    result = cli(capsys, "validate")
    assert result.code == 2 and "the following arguments are required: EXP" in result.err


def test_help_says_what_logdir_checks(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "checks the run's file-writing callbacks against it" in text
    assert "--strict" in text and "--explain CODE" in text


# --- run prints warnings and notes before training -------------------------------------------
@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stands in for the runtime: records the plans `run` would train, and marks stderr."""
    plans: list[str] = []

    def fake(plan: Any, **_: Any) -> int:
        plans.append(plan.experiment)
        print("<training>", file=sys.stderr)
        return 0

    monkeypatch.setattr(cli_run, "run_plan", fake)
    return plans


def test_run_prints_warnings_before_training(capsys: pytest.CaptureFixture[str],
                                             trained: list[str]) -> None:
    result = cli(capsys, "run", WARNED)
    assert result.code == 0 and trained == ["warned"]
    lines = result.err.splitlines()
    assert lines[0].startswith(SF506)
    assert lines[2].startswith("running: experiment 'warned' is valid: 0 error(s), 1 warning(s)")
    assert lines[3] == "<training>"


def test_run_prints_notes_too(capsys: pytest.CaptureFixture[str], trained: list[str]) -> None:
    result = cli(capsys, "run", f"{WARNED}:noted", "--quiet")
    assert result.err.startswith("info[SF506] ") and trained == ["warned"]


def test_run_of_a_clean_plan_prints_nothing_first(capsys: pytest.CaptureFixture[str],
                                                  trained: list[str]) -> None:
    result = cli(capsys, "run", f"{WARNED}:allowed")
    assert result.err == "<training>\n"


def test_run_still_refuses_errors(capsys: pytest.CaptureFixture[str],
                                  trained: list[str]) -> None:
    result = cli(capsys, "run", INVALID)
    assert result.code == 1 and trained == []
    assert "not running: experiment 'broken' has errors" in result.err


@pytest.mark.parametrize(("rank", "prints"), [("0", True), ("1", False)])
def test_under_torchrun_the_master_prints_the_warnings(
        capsys: pytest.CaptureFixture[str], trained: list[str],
        monkeypatch: pytest.MonkeyPatch, rank: str, prints: bool) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    result = cli(capsys, "run", WARNED)
    assert result.code == 0
    assert ("warning[SF506]" in result.err) is prints


def test_ddp_leaves_the_warnings_to_the_master_rank(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "run_torchrun", lambda command: 0)
    monkeypatch.setenv("STAGEGRAPH_DIST_TIMEOUT", "600")
    result = cli(capsys, "run", WARNED, "--ddp", "2")
    assert result.code == 0 and "SF506" not in result.err
