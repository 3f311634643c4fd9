"""Pass 1, schema: invalid values become diagnostics, never exceptions."""

from __future__ import annotations

from typing import Any

from conftest import LOADERS, Metric, Plain, codes, experiment

import stagegraph as sg
from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.schema import schema


def test_schema_keeps_declaration_order_and_records_declarations() -> None:
    exp = experiment("a", "b")
    exp.stages[0].callbacks = {"acc": Metric(), "plain": Plain(after=["acc"])}
    diags = Diagnostics()
    plan = schema(exp, diags)
    assert not diags.items
    assert [s.name for s in plan.stages] == ["a", "b"]
    acc, plain = plan.stages[0].callbacks
    assert acc.reads == ("output.logits", "batch.targets")
    assert acc.writes == ("metric.accuracy",)
    assert acc.events == ("on_batch_end",)
    assert acc.type == "conftest.Metric"
    assert plain.after == ("acc",)
    assert plan.stages[1].after == ("a",)


def test_invalid_stage_parameters_are_reported_with_hints() -> None:
    exp = sg.Experiment("x", model=object())
    bad: Any = {"num_epochs": 0, "minimize_metric": "yes", "precision": "fp8"}
    exp.add_stage("train", loaders=dict(LOADERS), **bad)
    plan = sg.compile(exp)
    errors = [(d.code, d.location.param) for d in plan.errors]
    assert ("SF101", "num_epochs") in errors
    assert ("SF101", "minimize_metric") in errors
    assert ("SF101", "precision") in errors
    assert plan.stages[0].num_epochs == 1  # replaced by the default so later passes go on


def test_unknown_parameter_suggests_the_right_one() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), num_epoch=3)  # type: ignore[call-arg]
    plan = sg.compile(exp)
    (diag,) = [d for d in plan.diagnostics if d.code == "SF102"]
    assert "Did you mean 'num_epochs'?" in diag.message
    assert str(diag.location) == "stage 'train' > param 'num_epoch'"


def test_duplicate_stage_and_empty_experiment() -> None:
    exp = experiment("a", "a")
    assert "SF103" in codes(sg.compile(exp))
    assert "SF104" in codes(sg.compile(sg.Experiment("empty")))


def test_callback_class_instead_of_instance() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"acc": Metric})
    (diag,) = [d for d in sg.compile(exp).diagnostics if d.code == "SF105"]
    assert "pass an instance" in diag.hint


def test_invalid_declarations() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "a": Plain(order="late"),  # type: ignore[arg-type]
        "b": Plain(node="everyone"),
        "c": Plain(reads=["no_namespace"]),
    })
    diags = [(d.code, d.location.callback) for d in sg.compile(exp).diagnostics]
    assert ("SF106", "a") in diags
    assert ("SF106", "b") in diags
    assert ("SF106", "c") in diags


def test_misspelt_event_is_an_error_with_did_you_mean() -> None:
    class Typo(sg.Callback):
        def on_epoch_ends(self, runner: Any) -> None:
            pass

    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"typo": Typo()})
    plan = sg.compile(exp)
    (diag,) = [d for d in plan.diagnostics if d.code == "SF107"]
    assert diag.severity is sg.Severity.error  # the hook would never be called: silently wrong
    assert "Did you mean 'on_epoch_end'?" in diag.message
    assert not plan.ok


def test_factory_arity_is_checked_without_calling() -> None:
    exp = sg.Experiment("x", model=lambda a, b: None, optimizer=lambda model: None)
    exp.add_stage("train", loaders={"train": lambda x: x, "valid": []})
    plan = sg.compile(exp)
    where = {(d.code, d.location.param, d.location.loader) for d in plan.diagnostics}
    assert ("SF110", "model", None) in where
    assert ("SF110", None, "train") in where
    assert not any(d.location.param == "optimizer" for d in plan.diagnostics)


def test_bad_device_rank_and_wrong_object() -> None:
    assert "SF108" in codes(sg.compile(experiment("a"), device="tpu"))
    assert "SF108" in codes(sg.compile(experiment("a"), rank="leader"))
    plan = sg.compile("not an experiment")  # type: ignore[arg-type]
    assert codes(plan) == ["SF100"]
    assert sg.compile(experiment("a"), device="cuda:1").ok


def test_odd_names_are_accepted() -> None:
    exp = experiment("étape 1", "stage two 🚀")
    exp.stages[0].callbacks = {"my metric ✓": Metric()}
    plan = sg.compile(exp)
    assert plan.ok, plan.diagnostics
    assert plan.stages[1].after == ("étape 1",)


def test_criterion_function_is_the_loss_itself() -> None:
    def cross_entropy(outputs: Any, targets: Any) -> Any:
        return 0

    exp = sg.Experiment("x", model=object(), criterion=cross_entropy, optimizer=object())
    exp.add_stage("train", loaders=dict(LOADERS))
    assert sg.compile(exp).ok
    exp = sg.Experiment("x", model=object(), criterion=lambda a, b, c: 0)
    exp.add_stage("train", loaders=dict(LOADERS))
    (diag,) = [d for d in sg.compile(exp).diagnostics if d.code == "SF110"]
    assert "(outputs, targets)" in diag.hint


def test_device_defaults_to_the_experiments() -> None:
    exp = sg.Experiment("x", model=object(), criterion=object(), device="cpu")
    exp.add_stage("train", loaders=dict(LOADERS))
    assert sg.compile(exp).device == "cpu"
    assert sg.compile(exp, device="cuda:0").device == "cuda:0"


def test_an_infer_stage_leaves_out_the_experiment_optimizer_and_scheduler() -> None:
    exp = sg.Experiment("x", model=object(), criterion=object(), optimizer=object(),
                        scheduler=object())
    exp.add_stage("train", loaders=dict(LOADERS))
    exp.add_stage("infer", loaders={"infer": []})
    exp.add_stage("infer_tuned", loaders={"infer": []}, optimizer=object())
    plan = schema(exp, Diagnostics())
    assert plan.stages[0].components == {"model": "experiment", "criterion": "experiment",
                                         "optimizer": "experiment", "scheduler": "experiment"}
    assert plan.stages[1].components == {"model": "experiment", "criterion": "experiment"}
    assert plan.stages[2].components == {"model": "experiment", "criterion": "experiment",
                                         "optimizer": "stage"}
