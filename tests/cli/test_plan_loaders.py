"""`stagegraph plan --loaders` (the fast path per loader, loaders built, the model not) and
`stagegraph plan --logdir DIR` showing what the run in DIR recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import INVALID, cli

from stagegraph.cli.loaders import recorded_lines
from stagegraph.runtime.fastpath_report import FILE

FIXTURE = str(Path(__file__).parent.parent / "runtime" / "fixtures" / "loaders_experiment.py")
FAST = "TensorDataset, RandomSampler, one indexing per tensor"
PREVIEW = f"""\
batch fast path per loader of experiment 'loaders' (loaders built, model not):
stage 'first':
  loader 'train': fast path ({FAST})
  loader 'valid': DataLoader: it has a collate_fn of its own (stacked)
  loader 'valid_off': DataLoader: turned off by fast_path=False
stage 'second':
  loader 'train': DataLoader: turned off by fast_path=False
  loader 'valid': DataLoader: turned off by fast_path=False
"""


def test_plan_loaders_prints_each_loaders_decision(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "plan", FIXTURE, "--loaders")
    assert (result.code, result.out, result.err) == (0, PREVIEW, "")


def test_plan_loaders_of_a_plan_with_errors_builds_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "plan", INVALID, "--loaders")
    assert result.code == 1 and result.out == ""
    assert result.err.endswith("; loaders not built\n")


def test_plan_with_the_logdir_of_a_run_shows_what_it_recorded(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "as the run recorded it" not in cli(capsys, "plan", FIXTURE, "--logdir",
                                               str(tmp_path)).out
    ran = cli(capsys, "run", FIXTURE + ":trainable", "--logdir", str(tmp_path), "--quiet")
    assert ran.code == 0, ran.err
    shown = cli(capsys, "plan", FIXTURE, "--logdir", str(tmp_path))
    assert shown.code == 0
    recorded = (f"\nbatch fast path per loader, as the run recorded it ({tmp_path / FILE}):\n"
                "stage 'first':\n"
                f"  loader 'train': fast path ({FAST})\n"
                "  loader 'valid': DataLoader: it has a collate_fn of its own (stacked)\n"
                "  loader 'valid_off': DataLoader: turned off by fast_path=False\n"
                "stage 'second':\n"
                "  loader 'train': DataLoader: turned off by fast_path=False\n"
                "  loader 'valid': DataLoader: turned off by fast_path=False\n")
    assert shown.out.endswith(recorded)
    with_preview = cli(capsys, "plan", FIXTURE, "--loaders", "--logdir", str(tmp_path))
    assert with_preview.out == PREVIEW + recorded


def test_no_logdir_or_no_record_adds_nothing(tmp_path: Path) -> None:
    assert recorded_lines(None) == recorded_lines(str(tmp_path)) == []
