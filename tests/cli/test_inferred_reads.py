"""The catalogue case from the command line: a callback that reads a batch metric in its code and
declares nothing is ordered after the metric's writer, and `explain` / `validate` say why."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import cli

EXPERIMENT = '''\
from typing import Any

import stagegraph as sg


class Accuracy(sg.Callback):
    order = sg.CallbackOrder.Metric
    reads = ("output.logits", "batch.targets")
    writes = ("metric.accuracy",)

    def on_batch_end(self, runner: Any) -> None:
        hits = runner.output["logits"].argmax(1) == runner.input["targets"]
        runner.batch_metrics["accuracy"] = hits.float().mean()


class Reporter(sg.Callback):
    """Reads the accuracy each batch; its bucket alone would run it first."""

    order = sg.CallbackOrder.Internal

    def on_batch_end(self, runner: Any) -> None:
        print(runner.batch_metrics["KEY"])


experiment = sg.Experiment("catalogue", model=object(), criterion=object(), optimizer=object())
experiment.add_stage("train", loaders={"train": [], "valid": []},
                     callbacks={"reporter": Reporter(), "accuracy": Accuracy()})
'''


#: Where the reporter reads the metric: ``my_callbacks.py:N``.
LINE = next(i for i, text in enumerate(EXPERIMENT.splitlines(), 1) if '["KEY"]' in text)
WHERE = f"my_callbacks.py:{LINE}"


def write(tmp_path: Path, key: str) -> str:
    path = tmp_path / "my_callbacks.py"
    path.write_text(EXPERIMENT.replace("KEY", key), encoding="utf-8")
    return str(path)


def test_explain_names_the_line_the_read_was_inferred_from(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    exp = write(tmp_path, "accuracy")
    assert cli(capsys, "validate", exp).code == 0
    result = cli(capsys, "explain", exp, "--stage", "train", "accuracy", "reporter")
    assert result.code == 0
    assert result.out.splitlines() == [
        "in stage 'train', 'accuracy' runs before 'reporter':",
        "  accuracy -> reporter: 'accuracy' writes 'metric.accuracy', which 'reporter' reads "
        f"(inferred from source, {WHERE}) (dataflow)  "
        "[overrides order buckets: Metric (20) before Internal (0)]",
    ]


def test_validate_reports_a_misspelt_read_in_the_code(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = cli(capsys, "validate", write(tmp_path, "acuracy"))
    assert result.code == 1
    assert ("error[SF501] stage 'train' > callback 'reporter' > key 'metric.acuracy': reads "
            f"batch metric 'acuracy' (inferred from source, {WHERE}), which this stage does "
            "not produce. Did you mean 'accuracy'?") in result.text


def test_the_drawing_shows_the_inferred_edge(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    out = tmp_path / "plan.dot"
    assert cli(capsys, "plan", write(tmp_path, "accuracy"), "-o", str(out)).code == 0
    assert "metric.accuracy (inferred)" in out.read_text(encoding="utf-8")
