"""Exclusive claims (SF515): one holder of a claim per stage; each mistake and its twin."""

from __future__ import annotations

from typing import Any

from conftest import LOADERS, Opt, experiment

import stagegraph as sg
from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.exclusive import check_exclusive, describe_claim, origin_of


class EarlyStop(sg.Callback):
    order = sg.CallbackOrder.External
    claims = ("early_stopping",)

    def on_epoch_end(self, runner: Any) -> None:
        pass


class Snapshot(sg.Callback):
    """Writes files under the logdir, named by its prefix (a checkpoint: it replaces the default
    one, which claims the files without a prefix)."""

    order = sg.CallbackOrder.External
    kind = "checkpoint"
    needs = ("logdir",)

    def __init__(self, prefix: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("claims", (f"files:checkpoints/{prefix}",))
        super().__init__(**kwargs)

    def on_epoch_end(self, runner: Any) -> None:
        pass


def sf515(plan: sg.ExecutionPlan) -> list[sg.Diagnostic]:
    return [d for d in plan.diagnostics if d.code == "SF515"]


def test_two_optimizer_callbacks_on_one_optimizer_are_an_error_naming_both() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"step": Opt(), "step_again": Opt()})
    (diag,) = sf515(sg.compile(exp))
    assert diag.severity is sg.Severity.error
    assert str(diag.location) == "stage 'train' > callback 'step_again'"
    assert diag.message.startswith("callbacks 'step' (declared here) and 'step_again' (declared "
                                   "here) both claim 'optimizer:'")
    assert "step the stage's optimizer" in diag.message
    assert "remove 'step_again' or 'step'" in diag.hint and "optimizer_key" in diag.hint


def test_twin_different_optimizer_keys_validate_clean() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "generator": Opt(claims=["optimizer:generator"]),
        "discriminator": Opt(claims=["optimizer:discriminator"])})
    plan = sg.compile(exp)
    assert plan.ok, plan.diagnostics
    assert not sf515(plan)


def test_migrating_early_stopper_meets_a_declared_one() -> None:
    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS),
                  callbacks={"early_stop": EarlyStop(scope="experiment")})
    exp.add_stage("finetune", loaders=dict(LOADERS), callbacks={"patience": EarlyStop()})
    (diag,) = sf515(sg.compile(exp))
    assert "'patience' (declared here) and 'early_stop' (migrated from stage 'pretrain')" in (
        diag.message)
    assert "remove 'patience' from this stage's callbacks" in diag.hint
    assert "migrate_from_previous_stage=False on stage 'finetune'" in diag.hint
    assert "scope='stage' in stage 'pretrain'" in diag.hint


def test_twins_of_the_migrating_early_stopper_validate_clean() -> None:
    # Each way out the hint gives: no migration into the stage, a stage-scoped stopper, one only.
    for first, second, migrate in [(EarlyStop(scope="experiment"), EarlyStop(), False),
                                   (EarlyStop(), EarlyStop(), True),
                                   (EarlyStop(scope="experiment"), None, True)]:
        exp = experiment()
        exp.add_stage("pretrain", loaders=dict(LOADERS), callbacks={"early_stop": first})
        exp.add_stage("finetune", loaders=dict(LOADERS), migrate_from_previous_stage=migrate,
                      callbacks={"patience": second} if second is not None else {})
        plan = sg.compile(exp)
        assert plan.ok and not sf515(plan), plan.diagnostics


def test_two_checkpoints_writing_the_same_files() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"best": Snapshot(), "last": Snapshot()})
    (diag,) = sf515(sg.compile(exp, logdir="runs"))
    assert "write the files checkpoints/* under the logdir" in diag.message
    assert "a different prefix or folder" in diag.hint


def test_twin_checkpoints_with_different_prefixes_validate_clean() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"best": Snapshot("best"), "last": Snapshot("last")})
    plan = sg.compile(exp, logdir="runs")
    assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_every_later_holder_is_reported_against_the_first() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"a": EarlyStop(), "b": EarlyStop(), "c": EarlyStop()})
    diags = sf515(sg.compile(exp))
    assert [d.location.callback for d in diags] == ["b", "c"]
    assert all("'a' (declared here)" in d.message for d in diags)


def test_a_claim_repeated_by_one_callback_is_not_a_conflict() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"stop": EarlyStop(claims=["early_stopping", "early_stopping"])})
    assert not sf515(sg.compile(exp))


class KindlessOpt(Opt):
    kind = None  # so the compiler's default optimizer callback is added next to it


def test_a_default_holder_gets_a_hint_to_replace_it() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"mine": KindlessOpt()})
    stage = sg.compile(exp).stage("train")
    default = stage.callback("optimizer").model_copy(update={"claims": ("optimizer:",)})
    stage = stage.model_copy(update={"callbacks": (stage.callback("mine"), default)})
    diags = Diagnostics()
    check_exclusive(stage, diags)
    (diag,) = diags.items
    assert "'optimizer' (added by default)" in diag.message
    assert "give 'mine' kind='optimizer' so that it replaces the default" in diag.hint
    assert "remove 'mine' from this stage's callbacks" in diag.hint


def test_claim_descriptions_and_origins() -> None:
    assert describe_claim("optimizer:generator") == "step the optimizer 'generator'"
    assert describe_claim("criterion:loss") == "write the loss 'metric.loss'"
    assert describe_claim("validation").startswith("manage validation")
    assert describe_claim("gpu:0") == "hold 'gpu:0'"
    exp = experiment("a", "b")
    exp.stages[0].callbacks = {"stop": EarlyStop(scope="experiment")}
    plan = sg.compile(exp)
    assert origin_of(plan.stage("a").callback("stop")) == "declared here"
    assert origin_of(plan.stage("b").callback("stop")) == "migrated from stage 'a'"
    assert origin_of(plan.stage("b").callback("validation")) == "added by default"


def test_a_lowered_level_silences_it() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), lints={"SF515": "allow"},
                  callbacks={"a": EarlyStop(), "b": EarlyStop()})
    assert sg.compile(exp).ok


def _two_optimizers(loss_keys: tuple[str, str]) -> sg.ExecutionPlan:
    from stagegraph.callbacks import CriterionCallback, OptimizerCallback

    exp = sg.Experiment("gan", model=object(), criterion=object(),
                        optimizer=lambda model: {"body": object(), "head": object()})
    callbacks: dict[str, sg.Callback] = {
        f"opt_{key}": OptimizerCallback(optimizer_key=key, metric_key=loss)
        for key, loss in zip(("body", "head"), loss_keys, strict=True)}
    for loss in dict.fromkeys(loss_keys):
        callbacks[f"loss_{loss}"] = CriterionCallback(metric_key=loss)
    exp.add_stage("train", loaders={"train": [], "valid": []}, callbacks=callbacks)
    return sg.compile(exp)


def test_two_optimizers_by_key_back_propagating_one_loss_are_an_error() -> None:
    """Each would call backward on the same graph: the second fails at the first batch."""
    (diag,) = sf515(_two_optimizers(("loss", "loss")))
    assert str(diag.location) == "stage 'train' > callback 'opt_head'"
    assert "both claim 'backward:loss'" in diag.message
    assert "its own loss (metric_key=...)" in diag.hint


def test_twin_two_optimizers_with_their_own_losses_validate_clean() -> None:
    plan = _two_optimizers(("loss", "head_loss"))
    assert sf515(plan) == []
