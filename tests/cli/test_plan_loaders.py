"""`stagegraph plan --loaders` (the fast path per loader, loaders built, the model not) and
`stagegraph plan --logdir DIR` showing what the run in DIR recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import INVALID, cli

import stagegraph as sg
from stagegraph.cli.loaders import recorded_lines
from stagegraph.loading import load_experiment
from stagegraph.runtime.fastpath import Decision
from stagegraph.runtime.fastpath_report import FILE, record

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
    assert (result.code, result.out) == (0, PREVIEW)
    assert result.err == "reading the data\n" * 5  # what the factories print goes to stderr


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
    assert recorded_lines(None, "x") == recorded_lines(str(tmp_path), "x") == []


def test_a_record_of_another_experiment_says_whose_it_is(tmp_path: Path) -> None:
    plan = sg.compile(load_experiment(FIXTURE))
    record(tmp_path, plan, "first", {"train": Decision("train", True, FAST)}, keep=False)
    assert recorded_lines(str(tmp_path), "other")[1] == (
        "batch fast path per loader, as a run of another experiment, 'loaders', recorded it "
        f"({tmp_path / FILE}):")


PARTS = """
import torch
from torch.utils.data import DataLoader, TensorDataset


def loaders(batch_size=4):
    data = TensorDataset(torch.randn(16, 3), torch.randint(0, 2, (16,)))
    return {"train": DataLoader(data, batch_size=batch_size, shuffle=True),
            "valid": DataLoader(data, batch_size=batch_size, num_workers=1)}
"""
CONFIG = """\
experiment: cfg
model: {_target_: torch.nn.Linear, in_features: 3, out_features: 2}
criterion: {_target_: torch.nn.CrossEntropyLoss}
optimizer: {_target_: torch.optim.SGD, lr: 0.1}
stages:
  a:
    loaders: {_target_: loader_parts_i12.loaders, batch_size: 8}
    fast_path: {train: false}
  infer:
    loaders: {_target_: loader_parts_i12.loaders, _names_: [valid]}
"""


def test_plan_loaders_of_a_config_file(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    (tmp_path / "loader_parts_i12.py").write_text(PARTS)
    (tmp_path / "exp.yaml").write_text(CONFIG)
    result = cli(capsys, "plan", str(tmp_path / "exp.yaml"), "--loaders")
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines()[1:] == [
        "stage 'a':",
        "  loader 'train': DataLoader: turned off by fast_path=False",
        "  loader 'valid': DataLoader: it loads in worker processes (num_workers=1)",
        "stage 'infer':",
        "  loader 'valid': DataLoader: it loads in worker processes (num_workers=1)"]


def test_plan_loaders_is_not_written_to_a_file(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    result = cli(capsys, "plan", FIXTURE, "--loaders", "-o", str(tmp_path / "plan.json"))
    assert result.code == 2 and "--loaders prints its report" in result.err
    assert not (tmp_path / "plan.json").exists()
