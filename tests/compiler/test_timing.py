"""SF521: code reading a batch's metric or output in on_batch_start, before the batch writes it."""

from __future__ import annotations

from typing import Any

from conftest import LOADERS, codes

import stagegraph as sg


def compile_with(callback: sg.Callback) -> sg.ExecutionPlan:
    exp = sg.Experiment("timing", model=object(), criterion=object(), optimizer=object())
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"cb": callback})
    return sg.compile(exp, verbose=False)


class ReadsLossEarly(sg.Callback):
    def on_batch_start(self, runner: Any) -> None:
        print(runner.batch_metrics["loss"])


class ReadsOutputEarly(sg.Callback):
    def on_batch_start(self, runner: Any) -> None:
        print(runner.output["logits"])


class ReadsLossLate(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        print(runner.batch_metrics["loss"])


class PeeksEarly(sg.Callback):
    def on_batch_start(self, runner: Any) -> None:
        print(runner.batch_metrics.get("loss"))


class WritesEarly(sg.Callback):
    def on_batch_start(self, runner: Any) -> None:
        runner.batch_metrics["seen"] = 1


class ReadsWhatIsWrittenEarly(sg.Callback):
    def on_batch_start(self, runner: Any) -> None:
        print(runner.batch_metrics["seen"])


def test_a_metric_read_at_batch_start_is_an_error() -> None:
    (diag,) = [d for d in compile_with(ReadsLossEarly()).diagnostics if d.code == "SF521"]
    assert str(diag.location) == "stage 'train' > callback 'cb' > key 'metric.loss'"
    assert "on_batch_start (test_timing.py:" in diag.message
    assert "on_batch_end" in diag.hint


def test_an_output_read_at_batch_start_is_an_error() -> None:
    assert "SF521" in codes(compile_with(ReadsOutputEarly()))


def test_twins_validate_clean() -> None:
    for callback in (ReadsLossLate(), PeeksEarly()):
        plan = compile_with(callback)
        assert plan.ok, plan.diagnostics


def test_a_key_written_at_batch_start_may_be_read_then() -> None:
    exp = sg.Experiment("timing", model=object(), criterion=object(), optimizer=object())
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"w": WritesEarly(), "r": ReadsWhatIsWrittenEarly()})
    assert "SF521" not in codes(sg.compile(exp, verbose=False))
