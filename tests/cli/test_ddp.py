"""`stagegraph run --ddp N`: checks the plan, then hands the same arguments to torchrun."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from cli_helpers import INVALID, VALID, cli

from stagegraph import cli as cli_module
from stagegraph import launch
from stagegraph.cli import run as cli_run


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    commands: list[list[str]] = []

    def fake(command: Sequence[str]) -> int:
        commands.append(list(command))
        return 0

    monkeypatch.setattr(launch, "run_torchrun", fake)
    # --dist-timeout writes os.environ; this makes monkeypatch restore it afterwards
    monkeypatch.setenv("STAGEGRAPH_DIST_TIMEOUT", "600")
    return commands


def test_ddp_starts_torchrun_with_the_same_arguments(
        capsys: pytest.CaptureFixture[str], launched: list[list[str]]) -> None:
    result = cli(capsys, "run", VALID, "--ddp", "2", "--device", "cpu", "--logdir", "runs",
                 "--check", "--quiet", "--traceback", "--dist-timeout", "30")
    assert result.code == 0, result.err
    assert launched == [launch.torchrun_command(2, [
        "run", VALID, "--device", "cpu", "--logdir", "runs", "--dist-timeout", "30",
        "--check", "--quiet", "--traceback"])]
    assert os.environ["STAGEGRAPH_DIST_TIMEOUT"] == "30"


def test_max_restarts_goes_to_torchrun(capsys: pytest.CaptureFixture[str],
                                       launched: list[list[str]]) -> None:
    result = cli(capsys, "run", VALID, "--ddp", "2", "--logdir", "runs", "--max-restarts", "3")
    assert result.code == 0, result.err
    assert launched == [launch.torchrun_command(2, ["run", VALID, "--logdir", "runs"],
                                                max_restarts=3)]
    assert launched[0][launched[0].index("--max-restarts") + 1] == "3"
    alone = cli(capsys, "run", VALID, "--max-restarts", "3")
    assert alone.code == 2 and "--max-restarts applies with --ddp N" in alone.err


def test_rank_arguments_keep_every_run_option_but_ddp() -> None:
    """... and --max-restarts, which is torchrun's."""
    parser = cli_module.build_parser()
    argv = ["run", VALID, "--ddp", "2", "--device", "cpu", "--logdir", "l", "--check",
            "--quiet", "--traceback", "--dist-timeout", "1.5", "--resume", "l/other",
            "--allow-plan-change", "--overwrite", "--checkpoint-every", "4",
            "--set", "optimizer.lr=0.1", "--set", "seed=3", "--max-restarts", "2"]
    args = parser.parse_args(argv)
    again = parser.parse_args(launch.rank_arguments(args))
    assert {**vars(args), "ddp": None, "max_restarts": 0} == vars(again)
    bare = parser.parse_args(["run", VALID, "--ddp", "2", "--resume"])
    assert parser.parse_args(launch.rank_arguments(bare)).resume is True
    options = {opt for action in parser._subparsers._group_actions[0].choices["run"]._actions
               for opt in action.option_strings}
    assert options - {"-h", "--help", "--ddp", "--max-restarts"} <= set(
        launch.rank_arguments(args)), (
        "a new `run` option must be passed on to the ranks by rank_arguments")


def test_a_plan_with_errors_does_not_launch(capsys: pytest.CaptureFixture[str],
                                            launched: list[list[str]]) -> None:
    result = cli(capsys, "run", INVALID, "--ddp", "2")
    assert result.code == 1 and "not running" in result.err and launched == []


def test_ddp_inside_torchrun_is_refused(capsys: pytest.CaptureFixture[str],
                                        launched: list[list[str]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = cli(capsys, "run", VALID, "--ddp", "2")
    assert result.code == 2 and launched == []
    assert "already started by torchrun; drop --ddp" in result.err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--ddp", "0", "--ddp '0': give a number of processes >= 1"),
    ("--ddp", "two", "--ddp 'two': give a number of processes >= 1"),
    ("--dist-timeout", "-3", "'-3' is not a positive number of seconds"),
    ("--max-restarts", "-1", "--max-restarts '-1': give a number of restarts >= 0"),
])
def test_bad_values_are_usage_errors(capsys: pytest.CaptureFixture[str], option: str,
                                     value: str, message: str) -> None:
    result = cli(capsys, "run", VALID, option, value)
    assert result.code == 2 and message in result.err


def test_under_torchrun_run_compiles_the_rank_plan(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    plans: list[str] = []
    monkeypatch.setattr(cli_run, "run_plan",
                        lambda plan, **_: plans.append(plan.rank.value) or 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert cli(capsys, "run", VALID).code == 0
    monkeypatch.setenv("RANK", "one")
    result = cli(capsys, "run", VALID)
    assert plans == ["master", "worker"]
    assert result.code == 1 and "error: environment variable RANK='one' is not an integer" in \
        result.err
