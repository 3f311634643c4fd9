"""Pass 4, defaults: built-ins are added explicitly and a user's own callback replaces them."""

from __future__ import annotations

from typing import Any

from conftest import LOADERS, experiment

import stagegraph as sg


def test_defaults_for_training_stage_with_logdir() -> None:
    plan = sg.compile(experiment("train"), logdir="runs/x")
    stage = plan.stage("train")
    defaults = [cb.name for cb in stage.callbacks if cb.origin == "default"]
    assert defaults == ["criterion", "metric_aggregation", "optimizer", "validation",
                        "console", "csv_logger", "checkpoint"]
    criterion = stage.callback("criterion")
    assert criterion.target == "stagegraph.runtime.callbacks:CriterionCallback"
    assert criterion.params == {"input_key": "logits", "target_key": "targets",
                                "metric_key": "loss"}
    assert criterion.reads == ("output.logits", "batch.targets")


def test_no_logdir_no_checkpoint_and_quiet_no_console() -> None:
    plan = sg.compile(experiment("train"), verbose=False)
    names = {cb.name for cb in plan.stage("train").callbacks}
    assert not names & {"checkpoint", "csv_logger", "console"}


def test_infer_stage_gets_no_training_defaults() -> None:
    exp = experiment("train")
    exp.add_stage("infer", loaders={"infer": []})
    plan = sg.compile(exp, logdir="runs")
    assert [cb.name for cb in plan.stage("infer").callbacks] == ["console"]


def test_user_callback_of_same_kind_replaces_default() -> None:
    class MyCriterion(sg.Callback):
        kind = "criterion"
        order = sg.CallbackOrder.Metric
        reads = ("output.logits", "batch.targets")
        writes = ("metric.loss",)

        def on_batch_end(self, runner: Any) -> None:
            pass

    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"my_loss": MyCriterion()})
    plan = sg.compile(exp)
    names = [cb.name for cb in plan.stage("train").callbacks]
    assert "criterion" not in names
    assert "my_loss" in names
    assert plan.ok, plan.diagnostics


def test_components_decide_criterion_optimizer_scheduler() -> None:
    exp = sg.Experiment("x", model=object(), scheduler=object())
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="loss")
    names = [cb.name for cb in sg.compile(exp).stage("train").callbacks]
    assert "criterion" not in names and "optimizer" not in names
    assert "scheduler" in names
