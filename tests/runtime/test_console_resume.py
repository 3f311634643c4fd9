"""The SF601 text of a real resume refused for a changed plan: each change shown in full."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import stagegraph as sg
from stagegraph.runtime.callbacks import AccuracyCallback
from stagegraph.runtime.errors import ResumeError

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import console_exp


def test_a_refused_resume_names_every_change_with_both_values_in_full(tmp_path: Path) -> None:
    sg.run(console_exp.build(num_epochs=2), device="cpu", logdir=tmp_path, verbose=False)
    changed = console_exp.build(num_epochs=3)
    changed.stages[0].callbacks["accuracy"] = AccuracyCallback(topk=(1, 3))
    plan = sg.compile(changed, device="cpu", verbose=False, logdir=str(tmp_path))
    with pytest.raises(ResumeError) as refused:
        sg.Runner(plan, resume=True)
    lines = [line for line in str(refused.value).splitlines() if line.startswith("error[")]
    assert lines == [
        "error[SF601] stage 'train' > param 'num_epochs': changed from 2 to 3",
        # Both lists share their first 31 characters: the change itself is after them.
        "error[SF601] stage 'train' > callback 'accuracy' > param 'writes': changed from "
        "['metric.accuracy', 'metric.accuracy02'] to ['metric.accuracy', 'metric.accuracy03'] "
        "(added ['metric.accuracy03']; removed ['metric.accuracy02'])"]
