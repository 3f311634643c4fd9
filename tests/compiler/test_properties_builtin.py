"""Property test: correct experiments built from the built-in callbacks are never flagged.

Random multi-stage experiments — training stages with accuracy (top-k), early stopping,
checkpoints, timers, loggers, an optimizer callback, schedulers; an inference stage with a
prediction writer — where every metric a callback or ``main_metric`` names exists in its stage
and every direction agrees with the metric's. The compiler must report no error and no warning
(with a logdir: nothing at all but notes). Whatever the checks learn (metric names, exclusive
kinds, component wiring, directions), a correct experiment stays clean.

The built-in callbacks import torch, hence this module apart from the torch-free compiler tests.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagegraph as sg
from stagegraph.compiler.diagnostics import Severity

pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from stagegraph.runtime.callbacks import (  # after the skips
    AccuracyCallback,
    CheckpointCallback,
    CSVLogger,
    EarlyStoppingCallback,
    OptimizerCallback,
    PredictionWriter,
    SchedulerCallback,
    TensorBoardLogger,
    TimerCallback,
    topk_names,
)

EXAMPLES = int(os.environ.get("STAGEGRAPH_FUZZ_EXAMPLES", "200")) // 2
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
TRAINING = ["pretrain", "train", "finetune"]


def factory() -> Any:
    raise AssertionError("the compiler never calls a factory")


@st.composite
def training_stage(draw: st.DrawFn, migrating: bool) -> dict[str, Any]:
    """A training stage's arguments; ``migrating``: an early stopper on 'loss' arrives."""
    directions = {"loss": True}  # metric name -> minimise?
    callbacks: dict[str, sg.Callback] = {}
    if draw(st.booleans()):
        topk = draw(st.sampled_from([(1,), (1, 3)]))
        callbacks["accuracy"] = AccuracyCallback(topk=topk)
        directions.update(dict.fromkeys(topk_names("accuracy", topk), False))
    metrics = sorted(directions)
    main = draw(st.sampled_from(metrics))
    if not migrating and draw(st.booleans()):
        watched = draw(st.sampled_from([None, *metrics]))
        callbacks["early_stop"] = EarlyStoppingCallback(
            patience=draw(st.integers(1, 3)), metric=watched,
            minimize=None if watched is None else directions[watched])
    if draw(st.booleans()):
        callbacks["checkpoint"] = CheckpointCallback(save_n_best=draw(st.integers(0, 3)),
                                                     load_best_on_stage_end=draw(st.booleans()))
    if draw(st.booleans()):
        callbacks["optimizer"] = OptimizerCallback(accumulation_steps=draw(st.integers(1, 3)))
    for name, make in (("timer", TimerCallback), ("csv_logger", CSVLogger),
                       ("tensorboard", TensorBoardLogger)):
        if draw(st.integers(0, 3)) == 0:
            callbacks[name] = make()
    kwargs: dict[str, Any] = {"main_metric": main, "minimize_metric": directions[main],
                              "num_epochs": draw(st.integers(1, 3)), "callbacks": callbacks}
    train = draw(st.sampled_from(["train", "train_a"]))
    valid = draw(st.sampled_from(["valid", "valid_holdout"]))
    kwargs["loaders"] = {train: [], valid: []}
    if valid != "valid":
        kwargs["valid_loader"] = valid
    if draw(st.integers(0, 3)) == 0:
        kwargs["scheduler"] = factory
        if draw(st.booleans()):
            callbacks["scheduler"] = SchedulerCallback(mode=draw(st.sampled_from(["epoch",
                                                                                  "batch"])))
    return kwargs


@st.composite
def builtin_experiments(draw: st.DrawFn) -> sg.Experiment:
    scheduler = draw(st.sampled_from([None, factory]))
    exp = sg.Experiment("builtin", seed=1, model=factory, criterion=factory, optimizer=factory,
                        scheduler=scheduler)
    names = TRAINING[:draw(st.integers(1, 3))]
    infer = draw(st.booleans())
    migrating = not infer and draw(st.booleans())
    for i, name in enumerate(names):
        kwargs = draw(training_stage(migrating=migrating and i > 0))
        if migrating and i == 0:
            kwargs["callbacks"]["early_stop"] = EarlyStoppingCallback(
                metric="loss", minimize=True, scope="experiment")
        exp.add_stage(name, **kwargs)
    if infer:
        callbacks = ({"predictions": PredictionWriter(keys=["logits"])}
                     if draw(st.booleans()) else {})
        exp.add_stage("infer", loaders={"infer": []}, callbacks=callbacks)
    return exp


def flagged(plan: sg.ExecutionPlan) -> list[str]:
    return [str(d) for d in plan.diagnostics if d.severity is not Severity.info]


@SETTINGS
@given(builtin_experiments())
def test_correct_experiments_of_built_in_callbacks_are_never_flagged(exp: sg.Experiment) -> None:
    with_logdir = sg.compile(exp, logdir="runs")
    assert flagged(with_logdir) == [] and with_logdir.diagnostics == ()
    assert sg.verify(with_logdir) == []
    without = sg.compile(exp)  # validate's view: at most notes that the run needs a logdir
    assert flagged(without) == []
    assert {d.code for d in without.diagnostics} <= {"SF510"}
