"""Pass 8, checks: run-time failures found before the run."""

from __future__ import annotations

from typing import Any

from conftest import LOADERS, Metric, Plain, codes, experiment

import stagegraph as sg


def test_key_nobody_writes_is_an_error_with_location() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "ckpt": Plain(reads=["metric.acuracy"]), "acc": Metric()})
    (diag,) = [d for d in sg.compile(exp).diagnostics if d.code == "SF501"]
    assert str(diag.location) == "stage 'train' > callback 'ckpt' > key 'metric.acuracy'"
    assert "Did you mean 'accuracy'?" in diag.message


def test_unknown_batch_key_is_a_warning_unless_batch_keys_declared() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"m": Plain(reads=["batch.mask"])})
    plan = sg.compile(exp)
    assert "SF502" in codes(plan) and plan.ok
    exp2 = experiment()
    exp2.add_stage("train", loaders=dict(LOADERS), batch_keys=["features", "targets"],
                   callbacks={"m": Plain(reads=["batch.mask"])})
    assert "SF501" in codes(sg.compile(exp2))


def test_output_of_undeclared_handler_is_a_warning() -> None:
    def step(runner: Any, batch: Any) -> Any:
        return {}

    exp = sg.Experiment("x", handler=step)
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="m", callbacks={
        "m": Plain(reads=["output.fake"], writes=["metric.m"])})
    plan = sg.compile(exp)
    assert "SF502" in codes(plan)

    @sg.handler(reads=["batch.images"], writes=["output.fake", "metric.loss"])
    def gan(runner: Any, batch: Any) -> Any:
        return {}

    # The handler writes the loss the default optimizer callback backpropagates (no criterion).
    exp = sg.Experiment("x", handler=gan, optimizer=object())
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "m": Plain(reads=["output.fake", "output.real"])})
    plan = sg.compile(exp)
    assert [(d.code, d.location.key) for d in plan.diagnostics] == [("SF501", "output.real")]


def test_main_metric_not_written() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="acc",
                  callbacks={"accuracy": Metric()})
    (diag,) = [d for d in sg.compile(exp).diagnostics if d.code == "SF503"]
    assert "Did you mean 'accuracy'?" in diag.message
    assert str(diag.location) == "stage 'train' > param 'main_metric'"


def test_loader_checks() -> None:
    exp = experiment()
    exp.add_stage("train", loaders={"train": [], "validation": []})
    exp.add_stage("infer_test", loaders={"train": [], "infer": []})
    exp.add_stage("empty", loaders={})
    exp.add_stage("odd", loaders={"train": [], "valid": [], "holdout": []})
    plan = sg.compile(exp)
    found = {(d.code, d.location.stage) for d in plan.diagnostics}
    assert ("SF504", "train") in found
    assert ("SF505", "infer_test") in found
    assert ("SF507", "empty") in found
    assert ("SF506", "odd") in found


def test_missing_model_for_supervised_handler() -> None:
    exp = sg.Experiment("x")
    exp.add_stage("infer", loaders={"infer": []})
    assert codes(sg.compile(exp)) == ["SF509"]


def test_all_diagnostics_together_sorted_by_location() -> None:
    exp = experiment()
    exp.add_stage("b", after=["nope"], loaders={"train": []}, num_epochs=-1)
    exp.add_stage("a", loaders=dict(LOADERS), callbacks={"x": Plain(after=["y"])})
    plan = sg.compile(exp)
    stages = [d.location.stage for d in plan.diagnostics]
    assert stages == sorted(stages, key=["b", "a"].index)
    assert {"SF202", "SF101", "SF504", "SF401"} <= set(codes(plan))


def test_the_valid_loader_is_not_an_unknown_prefix() -> None:
    """valid_loader='val' makes 'val' the validation loader: SF506 would say it is not."""
    exp = experiment()
    exp.add_stage("train", loaders={"train": object(), "val": object()}, valid_loader="val")
    assert "SF506" not in codes(sg.compile(exp))
