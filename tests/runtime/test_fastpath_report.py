"""The fast-path report: per loader, before a run (`preview`, loaders built, never the model)
and as a run records it in its logdir (`record`, `recorded`, ``fast_path.json``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

import stagegraph as sg
from stagegraph.loading import load_module
from stagegraph.runtime.errors import StagegraphWarning
from stagegraph.runtime.fastpath import Decision
from stagegraph.runtime.fastpath_report import FILE, LoaderReport, preview, record, recorded

loaders_experiment = load_module(str(Path(__file__).parent / "fixtures" / "loaders_experiment.py"))

FAST = "TensorDataset, RandomSampler, one indexing per tensor"
EXPECTED = [
    "first: loader 'train': fast path (" + FAST + ")",
    "first: loader 'valid': DataLoader: it has a collate_fn of its own (stacked)",
    "first: loader 'valid_off': DataLoader: turned off by fast_path=False",
    "second: loader 'train': DataLoader: turned off by fast_path=False",
    "second: loader 'valid': DataLoader: turned off by fast_path=False",
]


def _text(reports: list[LoaderReport] | None) -> list[str]:
    assert reports is not None
    return [f"{r.stage}: {r}" for r in reports]


def test_the_preview_builds_the_loaders_and_never_the_model() -> None:
    assert _text(preview(sg.compile(loaders_experiment.build()))) == EXPECTED


def test_a_factory_that_needs_a_run_is_not_known_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SG_LOADERS_DIST", "1")
    reports = preview(sg.compile(loaders_experiment.build()))
    (dist,) = [r for r in reports if r.loader == "valid_dist"]
    assert dist.status == "unknown"
    assert str(dist).startswith(
        "loader 'valid_dist': not known before the run: its factory sharded failed outside a "
        "run (ValueError: Default process group has not been initialized")
    assert len(reports) == len(EXPECTED) + 1  # the others are still reported


def test_a_plan_read_from_json_cannot_be_previewed() -> None:
    plan = sg.compile(loaders_experiment.build())
    with pytest.raises(ValueError, match="read from JSON"):
        preview(sg.ExecutionPlan.model_validate_json(plan.to_json()))


def test_a_run_records_what_the_preview_said(tmp_path: Path) -> None:
    exp = loaders_experiment.build(model=lambda: nn.Linear(3, 2))
    plan = sg.compile(exp, device="cpu", verbose=False, logdir=str(tmp_path))
    sg.Runner(plan).run()
    data = json.loads((tmp_path / FILE).read_text())
    assert (data["experiment"], data["plan_hash"]) == ("loaders", plan.hash)
    assert data["stages"]["first"]["train"] == {"used": True, "reason": FAST}
    assert _text(recorded(tmp_path)) == EXPECTED == _text(preview(plan))


def test_a_record_keeps_the_other_stages_only_when_asked(tmp_path: Path) -> None:
    plan = sg.compile(loaders_experiment.build())
    off = {"valid": Decision("valid", False, "turned off by fast_path=False")}
    record(tmp_path, plan, "first", off, keep=False)
    record(tmp_path, plan, "second", {"train": Decision("train", True, FAST)}, keep=True)
    assert _text(recorded(tmp_path)) == [
        "first: loader 'valid': DataLoader: turned off by fast_path=False",
        "second: loader 'train': fast path (" + FAST + ")"]
    record(tmp_path, plan, "second", off, keep=False)  # a new run starts the file afresh
    assert [r.stage for r in recorded(tmp_path) or []] == ["second"]
    assert not [p for p in tmp_path.iterdir() if p.name != FILE]  # no temporary file left


@pytest.mark.parametrize("content", [None, "{not json", '{"format": "other/1", "stages": {}}',
                                     '{"format": "stagegraph.fast_path/1", "stages": {"a": 3}}'])
def test_no_record_or_an_unreadable_one_is_none(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / FILE).write_text(content)
    assert recorded(tmp_path) is None


def test_reading_a_record_does_not_import_torch(tmp_path: Path) -> None:
    record(tmp_path, sg.compile(loaders_experiment.build()), "first",
           {"train": Decision("train", True, FAST)}, keep=False)
    code = ("import sys; from pathlib import Path; "
            "from stagegraph.runtime.fastpath_report import recorded; "
            f"assert len(recorded(Path({str(tmp_path)!r}))) == 1; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_record_that_cannot_be_written_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / FILE).mkdir()  # os.replace cannot put a file over a folder
    with pytest.warns(StagegraphWarning, match="could not record the fast-path decisions"):
        record(tmp_path, sg.compile(loaders_experiment.build()), "first",
               {"train": Decision("train", True, FAST)}, keep=False)
