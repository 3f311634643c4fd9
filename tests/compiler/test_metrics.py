"""The metric flow pass: metric names level by level, placeholders, and the checks they enable.

The built-in runtime callbacks import torch; tests may, the compiler itself never does.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from conftest import LOADERS, Metric, Plain, codes, experiment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagegraph as sg
from stagegraph.compiler.metrics import valid_metric_names

torch = pytest.importorskip("torch")
from stagegraph.runtime.callbacks import (  # noqa: E402
    AccuracyCallback,
    CheckpointCallback,
    CSVLogger,
    EarlyStoppingCallback,
    SchedulerCallback,
)


def stage_plan(exp: sg.Experiment, name: str = "train", **options: Any) -> sg.StagePlan:
    return sg.compile(exp, **options).stage(name)


def test_batch_metrics_become_loader_epoch_and_valid_metrics() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"acc": Metric()})
    stage = stage_plan(exp)
    assert stage.metrics == sg.compile(exp).stage("train").metrics
    flow = stage.metrics
    assert flow.batch == ("accuracy", "loss")
    assert flow.loader == ("accuracy", "loss")
    assert flow.epoch == ("train_accuracy", "train_loss", "valid_accuracy", "valid_loss", "lr")
    assert flow.valid == ("accuracy", "loss")
    assert flow.open == ()
    assert stage.callback("metric_aggregation").writes == (
        "loader_metric.accuracy", "loader_metric.loss", "epoch_metric.train_accuracy",
        "epoch_metric.train_loss", "epoch_metric.valid_accuracy", "epoch_metric.valid_loss")
    assert stage.callback("validation").writes == (
        "valid.metrics", "valid.is_best", "valid.best_metrics", "valid_metric.accuracy",
        "valid_metric.loss")


def test_metrics_written_directly_join_their_level() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "f1": Plain(writes=["loader_metric.f1"]),
        "hard": Plain(writes=["epoch_metric.valid_hard_recall"])})
    flow = stage_plan(exp).metrics
    assert flow.loader == ("loss", "f1")
    assert "train_f1" in flow.epoch and "valid_f1" in flow.epoch
    assert flow.valid == ("loss", "f1", "hard_recall")


def test_loaders_extending_the_valid_loader_are_not_valid_metrics() -> None:
    exp = experiment()
    exp.add_stage("train", loaders={"train": [], "valid": [], "valid_hard": []})
    flow = stage_plan(exp).metrics
    assert "valid_hard_loss" in flow.epoch
    assert flow.valid == ("loss",)
    assert valid_metric_names(["valid_hard_loss", "valid_loss"], "valid",
                              ["valid", "valid_hard"]) == ["loss"]


def test_a_stage_without_aggregation_or_validation_has_only_batch_metrics() -> None:
    exp = experiment()
    exp.add_stage("infer", loaders={"infer": []}, callbacks={"acc": Metric()})
    flow = stage_plan(exp, "infer").metrics
    assert (flow.batch, flow.loader, flow.epoch, flow.valid) == (("accuracy",), (), (), ())


def test_a_wildcard_writer_leaves_the_levels_after_it_open() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "many": Plain(writes=["metric.*"]), "reader": Plain(reads=["valid_metric.anything"])})
    plan = sg.compile(exp)
    stage = plan.stage("train")
    assert stage.metrics.open == ("batch", "loader", "epoch", "valid")
    assert stage.callback("metric_aggregation").writes == ("loader_metric.*", "epoch_metric.*")
    assert "valid_metric.*" in stage.callback("validation").writes
    assert plan.ok and "SF501" not in codes(plan)


def test_an_open_epoch_level_keeps_loader_metrics_exact() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "many": Plain(writes=["epoch_metric.*"])})
    stage = stage_plan(exp)
    assert stage.metrics.open == ("epoch", "valid")
    assert stage.callback("metric_aggregation").writes[0] == "loader_metric.loss"


def test_placeholders_take_the_stage_values() -> None:
    exp = experiment()
    exp.add_stage("train", loaders={"train": [], "holdout": []}, valid_loader="holdout",
                  main_metric="accuracy", minimize_metric=False, callbacks={
                      "acc": Metric(),
                      "watcher": Plain(reads=["valid_metric.{main_metric}",
                                              "epoch_metric.{valid_loader}_loss"],
                                       watch="{main_metric}")})
    plan = sg.compile(exp)
    watcher = plan.stage("train").callback("watcher")
    assert watcher.reads == ("valid_metric.accuracy", "epoch_metric.holdout_loss")
    assert watcher.watch == "accuracy"
    assert plan.ok


def test_a_migrated_reader_takes_the_receiving_stages_main_metric() -> None:
    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS), callbacks={
        "watcher": Plain(scope="experiment", reads=["valid_metric.{main_metric}"])})
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy",
                  minimize_metric=False, callbacks={"acc": Metric()})
    plan = sg.compile(exp)
    assert plan.stage("pretrain").callback("watcher").reads == ("valid_metric.loss",)
    assert plan.stage("train").callback("watcher").reads == ("valid_metric.accuracy",)
    assert plan.ok, plan.errors


def test_builtin_defaults_read_the_main_valid_metric_by_name() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), scheduler=lambda opt: None)
    stage = stage_plan(exp, logdir="runs")
    assert stage.callback("checkpoint").reads == ("valid_metric.loss", "valid.is_best")
    assert stage.callback("checkpoint").watch == "loss"
    assert stage.callback("scheduler").reads == ("valid_metric.loss",)
    edges = {(e.source, e.target, e.key) for e in stage.edges}
    assert ("validation", "checkpoint", "valid_metric.loss") in edges


def test_a_wildcard_read_is_one_edge_per_writer() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "acc": Metric(), "log": Plain(reads=["epoch_metric.*"])})
    stage = stage_plan(exp)
    (edge,) = [e for e in stage.edges if (e.source, e.target) == ("metric_aggregation", "log")]
    assert edge.key == "epoch_metric.*"
    assert edge.reason == ("'metric_aggregation' writes 'epoch_metric.train_accuracy' and 3 more "
                           "'epoch_metric' keys, which 'log' reads as 'epoch_metric.*'")


# --- what the checks find with it ----------------------------------------------------------------
def test_a_misspelt_early_stopping_metric_is_an_error_with_did_you_mean() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"early_stopping": EarlyStoppingCallback(metric="los")})
    plan = sg.compile(exp)
    (diag,) = plan.errors
    assert diag.code == "SF501"
    assert str(diag.location) == ("stage 'train' > callback 'early_stopping' > "
                                  "key 'valid_metric.los'")
    assert "reads valid metric 'los', which this stage does not produce. Did you mean 'loss'?" \
        in diag.message
    assert "Its valid metrics: 'loss'." in diag.message
    exp.stages[0].callbacks["early_stopping"] = EarlyStoppingCallback(metric="loss")
    assert sg.compile(exp).diagnostics == ()


def accuracy_then_finetune(**finetune: Any) -> tuple[sg.Experiment, dict[str, Any]]:
    exp = experiment()
    callbacks = {"accuracy": AccuracyCallback(),
                 "early_stopping": EarlyStoppingCallback(metric="accuracy", minimize=False,
                                                         scope="experiment")}
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy",
                  minimize_metric=False, callbacks=callbacks)
    exp.add_stage("finetune", loaders=dict(LOADERS), **finetune)
    return exp, callbacks


def test_an_early_stopper_migrating_into_a_stage_without_its_metric() -> None:
    exp, _ = accuracy_then_finetune()
    plan = sg.compile(exp)
    (diag,) = plan.errors
    assert (diag.code, str(diag.location)) == (
        "SF501", "stage 'finetune' > callback 'early_stopping' > key 'valid_metric.accuracy'")
    assert diag.message == (
        "reads valid metric 'accuracy', which this stage does not produce. Its valid metrics: "
        "'loss'. The callback migrated from stage 'train', where that metric exists.")
    assert diag.hint == (
        "'early_stopping' is experiment-scoped and migrates into this stage: set "
        "migrate_from_previous_stage=False on stage 'finetune', or make it stage-scoped "
        "(scope='stage') and declare it in each stage that needs it")


def test_following_the_migration_hint_validates_clean() -> None:
    exp, _ = accuracy_then_finetune(migrate_from_previous_stage=False)
    assert sg.compile(exp).diagnostics == ()
    exp, callbacks = accuracy_then_finetune()
    callbacks["early_stopping"] = EarlyStoppingCallback(metric="accuracy", minimize=False)
    exp.stages[0].callbacks = callbacks
    assert sg.compile(exp).diagnostics == ()


def test_main_metric_no_valid_metric_lists_the_valid_metrics_once() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="acc", minimize_metric=False,
                  callbacks={"accuracy": Metric(), "checkpoint": CheckpointCallback()})
    plan = sg.compile(exp)
    (diag,) = plan.errors  # the checkpoint's read of 'valid_metric.acc' is the same mistake
    assert diag.code == "SF503"
    assert diag.message == (
        "main_metric 'acc' is not a valid metric of this stage, so validation and checkpoints "
        "could not rank epochs. Did you mean 'accuracy'? Its valid metrics: 'accuracy', 'loss'.")
    assert "set main_metric to one of them" in diag.hint


def test_a_missing_valid_loader_is_reported_once() -> None:
    exp = experiment()
    exp.add_stage("train", loaders={"train": [], "valid_set": []},
                  callbacks={"early_stopping": EarlyStoppingCallback()})
    plan = sg.compile(exp)
    assert codes(plan) == ["SF504"]


def test_an_early_stopper_migrating_into_an_inference_stage() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"early_stopping": EarlyStoppingCallback(scope="experiment")})
    exp.add_stage("infer", loaders={"infer": []})
    plan = sg.compile(exp)
    (diag,) = plan.errors
    assert str(diag.location) == ("stage 'infer' > callback 'early_stopping' > "
                                  "key 'valid_metric.loss'")
    assert "An inference stage aggregates and validates no metrics." in diag.message
    assert "migrate_from_previous_stage=False on stage 'infer'" in diag.hint


def test_a_loader_metric_read_in_a_stage_without_aggregation() -> None:
    exp = experiment()
    exp.add_stage("infer", loaders={"infer": []}, callbacks={
        "acc": Metric(), "reader": Plain(reads=["loader_metric.accuracy"])})
    (diag,) = sg.compile(exp).errors
    assert diag.message.startswith("reads loader metric 'accuracy', which this stage does not "
                                   "produce. Its loader metrics: none.")


# --- property: built-in callbacks on metrics that exist never trip the metric checks -----------
EXAMPLES = int(os.environ.get("STAGEGRAPH_FUZZ_EXAMPLES", "200"))


@st.composite
def builtin_experiments(draw: st.DrawFn) -> sg.Experiment:
    """Linear training stages (and maybe a final infer stage) whose metric callbacks all name
    metrics their stage computes."""
    scheduler = draw(st.sampled_from([None, object()]))
    exp = sg.Experiment("props", model=object(), criterion=object(), optimizer=object(),
                        scheduler=scheduler)
    for i in range(draw(st.integers(1, 3))):
        extra = draw(st.lists(st.sampled_from(["valid_hard", "train_b"]), unique=True))
        loaders: dict[str, Any] = {name: [] for name in ["train", "valid", *extra]}
        topk = draw(st.sets(st.integers(1, 3), max_size=2))
        callbacks: dict[str, Any] = {}
        metrics = ["loss"]
        if topk:
            accuracy = AccuracyCallback(topk=topk)
            callbacks["accuracy"] = accuracy
            metrics += [key.split(".", 1)[1] for key in accuracy.writes]
        main = draw(st.sampled_from(metrics))
        if draw(st.booleans()):
            watched = draw(st.sampled_from([None, *metrics]))
            callbacks["early_stopping"] = EarlyStoppingCallback(
                metric=watched, minimize=None if watched is None else watched == "loss")
        if draw(st.booleans()):
            callbacks["checkpoint"] = CheckpointCallback(prefix=draw(st.sampled_from(["", "b_"])))
        if scheduler is not None and draw(st.booleans()):  # it needs one
            callbacks["scheduler"] = SchedulerCallback()
        if draw(st.booleans()):
            callbacks["csv"] = CSVLogger(folder="csv")
        exp.add_stage(f"stage{i}", loaders=loaders, main_metric=main,
                      minimize_metric=main == "loss", callbacks=callbacks)
    if draw(st.booleans()):
        exp.add_stage("infer", loaders={"infer": []})
    return exp


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(builtin_experiments(), st.sampled_from([None, "runs"]))
def test_builtins_on_existing_metrics_never_raise_metric_errors(exp: sg.Experiment,
                                                                logdir: str | None) -> None:
    plan = sg.compile(exp, logdir=logdir)
    assert plan.errors == ()
    for stage in plan.stages:
        assert stage.metrics.open == ()
        if not stage.is_infer:
            assert stage.main_metric in stage.metrics.valid
