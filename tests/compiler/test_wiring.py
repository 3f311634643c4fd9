"""Component wiring (SF509-SF514, SF510): each mistake and its corrected twin."""

from __future__ import annotations

from typing import Any

from conftest import LOADERS, Metric, Opt, Plain, codes, experiment, model_factory

import stagegraph as sg


class OwnOptimizer(sg.Callback):
    """Builds and steps an optimizer of its own: claims the stage's, needs no component."""

    order = sg.CallbackOrder.Optimizer
    reads = ("metric.loss",)
    claims = ("optimizer:",)

    def on_batch_end(self, runner: Any) -> None:
        pass


class Logger(sg.Callback):
    order = sg.CallbackOrder.Logging
    needs = ("logdir",)

    def on_epoch_end(self, runner: Any) -> None:
        pass


def bare(**components: Any) -> sg.Experiment:
    """An experiment with a model and only the components given."""
    return sg.Experiment("wiring", model=model_factory, **components)


def errors(plan: sg.ExecutionPlan) -> list[tuple[str, str]]:
    return [(d.code, str(d.location)) for d in plan.errors]


# --- SF511: a stage that trains through no train* loader ---------------------------------------
def test_stage_whose_train_loader_is_misnamed_trains_nothing() -> None:
    exp = experiment()
    exp.add_stage("finetune", loaders={"finetune": [], "valid": []})
    plan = sg.compile(exp)
    (diag,) = [d for d in plan.diagnostics if d.code == "SF511"]
    assert diag.severity is sg.Severity.error
    assert str(diag.location) == "stage 'finetune' > param 'loaders'"
    assert "none of its loaders ('finetune', 'valid') starts with 'train'" in diag.message
    assert "'finetune' -> 'train_finetune'" in diag.hint and "'infer_finetune'" in diag.hint
    assert "SF506" in codes(plan)  # the loader itself keeps its warning


def test_twins_of_the_misnamed_train_loader_validate_clean() -> None:
    exp = experiment()
    exp.add_stage("finetune", loaders={"train_finetune": [], "valid": []})
    exp.add_stage("infer_finetune", loaders={"valid": []})
    plan = sg.compile(exp)
    assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_stage_with_only_a_valid_loader_is_told_to_add_a_train_loader() -> None:
    exp = experiment()
    exp.add_stage("evaluate", loaders={"valid": []})
    (diag,) = sg.compile(exp).errors
    assert diag.code == "SF511" and "add a 'train' loader" in diag.hint


# --- SF512: training without an optimizer ------------------------------------------------------
def test_training_stage_without_optimizer() -> None:
    exp = bare(criterion=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS))
    plan = sg.compile(exp)
    assert errors(plan) == [("SF512", "stage 'train' > param 'optimizer'")]
    assert "no optimizer" in plan.errors[0].message and "optimizer=" in plan.errors[0].hint


def test_twins_with_an_optimizer_validate_clean() -> None:
    stage_level = bare(criterion=model_factory)
    stage_level.add_stage("train", loaders=dict(LOADERS), optimizer=model_factory)
    experiment_level = bare(criterion=model_factory, optimizer=model_factory)
    experiment_level.add_stage("train", loaders=dict(LOADERS))
    own = bare(criterion=model_factory)
    own.add_stage("train", loaders=dict(LOADERS), callbacks={"optimizer": OwnOptimizer()})
    for exp in (stage_level, experiment_level, own):
        plan = sg.compile(exp)
        assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_callback_that_needs_the_optimizer_is_named() -> None:
    exp = bare(criterion=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"step": Opt()})
    plan = sg.compile(exp)
    (diag,) = plan.errors
    assert (diag.code, str(diag.location)) == ("SF512", "stage 'train' > callback 'step'")
    assert diag.message == "'step' (declared here) needs the stage's optimizer, and the stage " \
                           "has no optimizer"
    assert "or remove 'step'" in diag.hint


def test_custom_handler_may_update_weights_itself() -> None:
    def step(runner: Any, batch: Any) -> Any:
        return {}

    exp = sg.Experiment("custom", handler=step)
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="m",
                  callbacks={"m": Plain(writes=["metric.m"])})
    assert not {"SF512", "SF513"} & set(codes(sg.compile(exp)))


# --- SF513: training without a criterion -------------------------------------------------------
def test_training_stage_without_criterion_is_reported_once() -> None:
    exp = bare(optimizer=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy", minimize_metric=False,
                  callbacks={"accuracy": Metric()})
    plan = sg.compile(exp)
    assert errors(plan) == [("SF513", "stage 'train' > param 'criterion'")]  # no SF501 too
    assert "nothing writes 'metric.loss', which the optimizer callback 'optimizer' " \
           "backpropagates" in plan.errors[0].message
    assert "criterion=" in plan.errors[0].hint


def test_twins_with_a_criterion_or_a_loss_writer_validate_clean() -> None:
    given = bare(optimizer=model_factory, criterion=model_factory)
    given.add_stage("train", loaders=dict(LOADERS))
    own_loss = bare(optimizer=model_factory)
    own_loss.add_stage("train", loaders=dict(LOADERS), callbacks={"loss": Metric("loss")})
    for exp in (given, own_loss):
        plan = sg.compile(exp)
        assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_with_a_criterion_a_misread_loss_is_sf501_not_sf513() -> None:
    exp = bare(optimizer=model_factory, criterion=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"optimizer": Opt(reads=["metric.total"])})
    plan = sg.compile(exp)
    assert errors(plan) == [("SF501", "stage 'train' > callback 'optimizer' > key 'metric.total'")]


def test_no_optimizer_and_no_criterion_reports_both() -> None:
    exp = bare()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="accuracy", minimize_metric=False,
                  callbacks={"accuracy": Metric()})
    plan = sg.compile(exp)
    assert sorted(code for code, _ in errors(plan)) == ["SF512", "SF513"]
    (sf513,) = [d for d in plan.errors if d.code == "SF513"]
    assert "the loss an optimizer callback backpropagates" in sf513.message


def test_callback_that_needs_the_criterion_is_named() -> None:
    class Loss(sg.Callback):
        order = sg.CallbackOrder.Metric
        writes = ("metric.loss",)
        needs = ("criterion",)

        def on_batch_end(self, runner: Any) -> None:
            pass

    exp = bare(optimizer=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"loss": Loss()})
    assert errors(sg.compile(exp)) == [("SF513", "stage 'train' > callback 'loss'")]


# --- SF514: a scheduler without an optimizer ---------------------------------------------------
def test_scheduler_without_optimizer_says_the_stage_has_none() -> None:
    exp = bare(criterion=model_factory)
    exp.add_stage("pretrain", loaders=dict(LOADERS), optimizer=model_factory)
    exp.add_stage("finetune", loaders=dict(LOADERS), scheduler=model_factory)
    plan = sg.compile(exp)
    assert errors(plan) == [("SF512", "stage 'finetune' > param 'optimizer'"),
                            ("SF514", "stage 'finetune' > param 'scheduler'")]
    assert "a scheduler (the stage's own) but no optimizer" in plan.errors[1].message


def test_twin_scheduler_with_optimizer_validates_clean() -> None:
    exp = bare(criterion=model_factory)
    exp.add_stage("pretrain", loaders=dict(LOADERS), optimizer=model_factory)
    exp.add_stage("finetune", loaders=dict(LOADERS), optimizer=model_factory,
                  scheduler=model_factory)
    plan = sg.compile(exp)
    assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_experiment_scheduler_and_optimizer_reaching_an_infer_stage_are_fine() -> None:
    exp = bare(criterion=model_factory, optimizer=model_factory, scheduler=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS))
    exp.add_stage("infer", loaders={"infer": []})
    plan = sg.compile(exp)
    assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_callback_needing_the_optimizer_in_an_infer_stage() -> None:
    exp = bare(criterion=model_factory, optimizer=model_factory)
    exp.add_stage("infer", loaders={"infer": []},
                  callbacks={"step": Opt(reads=["metric.loss"], writes=["metric.loss"])})
    (diag,) = sg.compile(exp).errors
    assert diag.code == "SF512" and "an inference stage does not build the experiment's " \
                                   "optimizer" in diag.message
    assert "this stage's add_stage(...)" in diag.hint


def test_callback_needing_a_scheduler_or_a_model() -> None:
    def step(runner: Any, batch: Any) -> Any:
        return {}

    exp = sg.Experiment("x", handler=step, optimizer=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "loss": Metric("loss"), "sched": Plain(needs=["scheduler"]), "viz": Plain(needs="model")})
    assert errors(sg.compile(exp)) == [("SF514", "stage 'train' > callback 'sched'"),
                                       ("SF509", "stage 'train' > callback 'viz'")]


def test_unknown_need_is_a_malformed_declaration() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"log": Plain(needs=["logdirs"])})
    (diag,) = sg.compile(exp).errors
    assert diag.code == "SF106" and "Did you mean 'logdir'?" in diag.message


# --- SF510: files without a logdir -------------------------------------------------------------
def test_file_writer_without_logdir_is_a_note_until_the_run() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"tb": Logger()})
    plan = sg.compile(exp)
    (diag,) = plan.diagnostics
    assert (diag.code, diag.severity, str(diag.location)) == (
        "SF510", sg.Severity.info, "stage 'train' > callback 'tb'")
    assert plan.ok  # validate cannot know the run's logdir; the Runner refuses it
    assert "--logdir DIR" in diag.hint and "logdir=" in diag.hint


def test_twin_with_a_logdir_validates_clean() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"tb": Logger()})
    plan = sg.compile(exp, logdir="runs/x")
    assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_logdir_note_follows_lint_levels() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"tb": Logger()},
                  lints={"SF510": "allow"})
    assert not sg.compile(exp).diagnostics
    exp = experiment()
    exp.lints = {"SF510": "error"}
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"tb": Logger()})
    assert codes(sg.compile(exp)) == ["SF510"] and not sg.compile(exp).ok


def test_migrating_file_writer_gets_one_note() -> None:
    exp = experiment("a", "b", "c")
    exp.stages[0].callbacks = {"tb": Logger(scope="experiment")}
    assert [str(d.location) for d in sg.compile(exp).diagnostics] == [
        "stage 'a' > callback 'tb'"]


def test_a_migrated_callback_needing_what_the_stage_lacks_is_told_how_to_keep_it_out() -> None:
    exp = bare(criterion=model_factory, optimizer=model_factory)
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "step": Opt(scope="experiment", reads=["metric.loss"], writes=["metric.loss"])})
    exp.add_stage("infer", loaders={"infer": []})
    (diag,) = [d for d in sg.compile(exp).errors if d.location.stage == "infer"]
    assert diag.code == "SF512" and "migrated from stage 'train'" in diag.message
    assert "migrate_from_previous_stage=False on stage 'infer'" in diag.hint
    exp.stages[1].params["migrate_from_previous_stage"] = False
    assert sg.compile(exp).ok
