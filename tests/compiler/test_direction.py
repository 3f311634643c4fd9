"""Metric direction (SF516): well-known metrics ranked the wrong way; each mistake and its twin."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import LOADERS, Metric, experiment

import stagegraph as sg
from stagegraph.compiler.direction import known_minimize


class Stopper(sg.Callback):
    """Ranks epochs by the stage's main metric unless told otherwise (as early stopping does)."""

    order = sg.CallbackOrder.External
    watch = "{main_metric}"

    def on_epoch_end(self, runner: Any) -> None:
        pass


@pytest.mark.parametrize("name", [
    "accuracy", "accuracy01", "acc", "valid_accuracy", "f1", "f1_macro", "auc", "roc_auc", "ap",
    "ap50", "map", "mAP", "map@5", "iou", "miou", "dice", "precision", "recall", "r2",
    "top1_acc"])
def test_maximised_names(name: str) -> None:
    assert known_minimize(name) is False


@pytest.mark.parametrize("name", [
    "loss", "valid_loss", "loss_g", "mae", "mse", "rmse", "mape", "error", "error_rate",
    "perplexity", "dice_loss", "iou_loss", "accuracy_error"])
def test_minimised_names(name: str) -> None:
    assert known_minimize(name) is True


@pytest.mark.parametrize("name", [
    "apex", "mapping", "lossless", "score", "reward", "", "neg_mse", "negative_loss", "mae_r2",
    "precisions"])
def test_unknown_names_have_no_direction(name: str) -> None:
    assert known_minimize(name) is None


def test_main_metric_to_maximise_with_default_minimize_metric() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy",
                  callbacks={"accuracy": Metric()})
    plan = sg.compile(exp)
    (diag,) = plan.errors
    assert (diag.code, str(diag.location)) == ("SF516", "stage 'train' > param 'minimize_metric'")
    assert diag.message.startswith("main_metric 'accuracy' is a metric to be maximised, but "
                                   "minimize_metric=True")
    assert diag.hint.startswith("pass minimize_metric=False")


def test_twin_with_minimize_metric_false_validates_clean() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy01",
                  minimize_metric=False, callbacks={"accuracy": Metric("accuracy01")})
    plan = sg.compile(exp)
    assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_a_loss_to_maximise_is_flagged_the_other_way() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), minimize_metric=False)
    (diag,) = sg.compile(exp).errors
    assert diag.code == "SF516" and "pass minimize_metric=True" in diag.hint


def test_unknown_metric_names_are_never_flagged() -> None:
    for minimize in (True, False):
        exp = experiment()
        exp.add_stage("train", loaders=dict(LOADERS), main_metric="reward",
                      minimize_metric=minimize, callbacks={"reward": Metric("reward")})
        assert sg.compile(exp).ok


def test_inference_stages_rank_nothing() -> None:
    exp = experiment()
    exp.add_stage("infer", loaders={"infer": []}, main_metric="accuracy")
    assert sg.compile(exp).ok


def test_callback_watching_with_the_wrong_direction() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "accuracy": Metric(), "stop": Stopper(watch="accuracy", watch_minimize=True)})
    (diag,) = sg.compile(exp).errors
    assert (diag.code, str(diag.location)) == (
        "SF516", "stage 'train' > callback 'stop' > param 'watch_minimize'")
    assert "'stop' (declared here) ranks epochs by 'accuracy', a metric to be maximised, with " \
           "watch_minimize=True" in diag.message
    assert "watch_minimize=False" in diag.hint and "minimize=False" in diag.hint


def test_callback_without_a_direction_takes_the_stages() -> None:
    # The stage minimises its loss; a stopper pinned to accuracy would minimise accuracy.
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"accuracy": Metric(), "stop": Stopper(watch="accuracy")})
    (diag,) = sg.compile(exp).errors
    assert "no direction of its own, so the stage's minimize_metric=True" in diag.message


def test_twins_of_the_watching_callback_validate_clean() -> None:
    for stopper in (Stopper(watch="accuracy", watch_minimize=False), Stopper(),
                    Stopper(watch="loss", watch_minimize=True)):
        exp = experiment()
        exp.add_stage("train", loaders=dict(LOADERS),
                      callbacks={"accuracy": Metric(), "stop": stopper})
        plan = sg.compile(exp)
        assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_main_metric_placeholder_is_the_receiving_stages() -> None:
    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS),
                  callbacks={"stop": Stopper(watch_minimize=True, scope="experiment")})
    exp.add_stage("finetune", loaders=dict(LOADERS), main_metric="accuracy",
                  minimize_metric=False, callbacks={"accuracy": Metric()})
    (diag,) = sg.compile(exp).errors
    assert str(diag.location) == "stage 'finetune' > callback 'stop' > param 'watch_minimize'"
    assert "(migrated from stage 'pretrain') ranks epochs by 'accuracy'" in diag.message


def test_the_stage_check_is_not_repeated_for_callbacks_that_follow_it() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy",
                  callbacks={"accuracy": Metric(), "stop": Stopper()})
    assert [str(d.location) for d in sg.compile(exp).errors] == [
        "stage 'train' > param 'minimize_metric'"]


def test_lint_level_allow_keeps_an_unusual_direction_on_purpose() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy",
                  callbacks={"accuracy": Metric()}, lints={"SF516": "allow"})
    assert sg.compile(exp).ok


@pytest.mark.parametrize("name", [
    "auroc", "multiclass_auroc", "binary_auroc", "F1Score", "f1score", "multiclass_f1_score",
    "fbeta", "jaccard", "r2score"])
def test_torchmetrics_default_keys_are_maximised(name: str) -> None:
    assert known_minimize(name) is False


def test_logloss_is_minimised() -> None:
    assert known_minimize("logloss") is True
