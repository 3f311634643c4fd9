"""ValidationManagerCallback and EarlyStoppingCallback: best epochs, for min and max metrics."""

from __future__ import annotations

import pytest
from cb_helpers import make_runner

from stagegraph.runtime.callbacks import EarlyStoppingCallback, ValidationManagerCallback
from stagegraph.runtime.callbacks.validation import valid_metrics_of


def _epochs(callback, runner, values, metric="loss"):  # type: ignore[no-untyped-def]
    """Runs epochs whose valid `metric` takes `values`; returns is_best_valid per epoch."""
    flags = []
    for epoch, value in enumerate(values, start=1):
        runner.epoch = epoch
        callback.on_epoch_start(runner)
        assert runner.is_best_valid is False
        runner.epoch_metrics = {f"train_{metric}": 0.0, f"valid_{metric}": value, "lr": 0.1}
        callback.on_epoch_end(runner)
        flags.append(runner.is_best_valid)
    return flags


def test_best_tracking_when_minimising() -> None:
    runner = make_runner(main_metric="loss", minimize_metric=True, loaders={"train": 0, "valid": 0})
    callback = ValidationManagerCallback()
    callback.on_stage_start(runner)
    assert _epochs(callback, runner, [1.0, 0.5, 0.7, 0.5, 0.2]) == [
        True, True, False, False, True]
    assert runner.valid_metrics == {"loss": 0.2}
    assert runner.best_valid_metrics == {"loss": 0.2}
    assert callback.best_epoch == 5


def test_best_tracking_when_maximising() -> None:
    runner = make_runner(main_metric="accuracy", minimize_metric=False)
    callback = ValidationManagerCallback()
    callback.on_stage_start(runner)
    assert _epochs(callback, runner, [0.5, 0.4, 0.8, 0.8], "accuracy") == [
        True, False, True, False]
    assert runner.best_valid_metrics == {"accuracy": 0.8}
    assert callback.best_epoch == 3


def test_best_resets_at_stage_start() -> None:
    runner = make_runner()
    callback = ValidationManagerCallback()
    callback.on_stage_start(runner)
    _epochs(callback, runner, [0.1])
    callback.on_stage_start(runner)
    assert runner.best_valid_metrics == {} and runner.valid_metrics == {}
    assert _epochs(callback, runner, [5.0]) == [True]


def test_state_dict_restores_the_best_across_a_resume() -> None:
    runner = make_runner()
    first = ValidationManagerCallback()
    first.on_stage_start(runner)
    _epochs(first, runner, [0.3, 0.1])
    resumed = ValidationManagerCallback()
    resumed.load_state_dict(first.state_dict())
    runner = make_runner()
    resumed.on_stage_start(runner)
    assert runner.best_valid_metrics == {"loss": 0.1}
    assert _epochs(resumed, runner, [0.2]) == [False]


def test_valid_metrics_leave_out_loaders_extending_the_valid_loader_name() -> None:
    metrics = {"valid_loss": 1.0, "valid_hard_loss": 2.0, "valid_hard": 3.0, "lr": 0.1}
    assert valid_metrics_of(metrics, "valid", ("train", "valid", "valid_hard")) == {
        "loss": 1.0, "hard": 3.0}


def test_missing_main_metric_is_a_clear_error() -> None:
    runner = make_runner(main_metric="f1", epoch_metrics={"valid_loss": 1.0})
    with pytest.raises(KeyError, match=r"main metric 'f1'.*'valid'.*\['loss'\]"):
        ValidationManagerCallback().on_epoch_end(runner)


def _stops(callback, runner, values):  # type: ignore[no-untyped-def]
    """The epoch (1-based) at which early stopping is requested, or None."""
    callback.on_stage_start(runner)
    for epoch, value in enumerate(values, start=1):
        runner.epoch = epoch
        runner.valid_metrics = {runner.main_metric: value}
        callback.on_epoch_end(runner)
        if runner.need_early_stop:
            return epoch
    return None


def test_early_stopping_patience() -> None:
    runner = make_runner()
    assert _stops(EarlyStoppingCallback(patience=2), runner, [1.0, 0.9, 0.95, 0.91, 0.8]) == 4
    runner = make_runner()
    assert _stops(EarlyStoppingCallback(patience=2), runner, [1.0, 0.9, 0.95, 0.8, 0.85]) is None


def test_early_stopping_min_delta_and_maximise() -> None:
    runner = make_runner(main_metric="accuracy", minimize_metric=False)
    # +0.005 is within min_delta, so it does not count as an improvement.
    assert _stops(EarlyStoppingCallback(patience=1, min_delta=0.01), runner,
                  [0.5, 0.505]) == 2
    runner = make_runner(main_metric="accuracy", minimize_metric=False)
    assert _stops(EarlyStoppingCallback(patience=1, min_delta=0.01), runner,
                  [0.5, 0.52, 0.6]) is None


def test_early_stopping_explicit_metric_and_direction() -> None:
    runner = make_runner(main_metric="loss", minimize_metric=True)
    callback = EarlyStoppingCallback(patience=1, metric="accuracy", minimize=False)
    callback.on_stage_start(runner)
    for accuracy in (0.5, 0.4):
        runner.valid_metrics = {"loss": 0.0, "accuracy": accuracy}
        callback.on_epoch_end(runner)
    assert runner.need_early_stop is True


def test_early_stopping_state_round_trip_and_stage_reset() -> None:
    runner = make_runner()
    callback = EarlyStoppingCallback(patience=3)
    _stops(callback, runner, [1.0, 2.0, 3.0])
    assert callback.state_dict() == {"best": 1.0, "wait": 2, "best_epoch": 1, "stopped": None}
    assert callback.stopped is None
    resumed = EarlyStoppingCallback(patience=3)
    resumed.load_state_dict(callback.state_dict())
    runner = make_runner(valid_metrics={"loss": 4.0}, epoch=4, stage_name="train")
    resumed.on_stage_start(runner)  # resuming: counters kept once
    resumed.on_epoch_end(runner)
    assert runner.need_early_stop is True
    assert resumed.stopped is not None and (resumed.stopped.epoch, resumed.stopped.best,
                                            resumed.stopped.best_epoch) == (4, 1.0, 1)
    # A resume of the stage it ended (a later callback failed at stage end) keeps the record,
    # so the console still says why the stage ended.
    ended = EarlyStoppingCallback(patience=3)
    ended.load_state_dict(resumed.state_dict())
    ended.on_stage_start(runner)
    assert ended.stopped == resumed.stopped
    resumed.on_stage_start(runner)  # a new stage: counters and the record reset
    assert resumed.state_dict() == {"best": None, "wait": 0, "best_epoch": None, "stopped": None}
    assert resumed.stopped is None
    old = EarlyStoppingCallback(patience=3)
    old.load_state_dict({"best": 1.0, "wait": 2})  # a checkpoint from before best_epoch
    assert old.state_dict() == {"best": 1.0, "wait": 2, "best_epoch": None, "stopped": None}


def test_early_stopping_params_are_checked() -> None:
    with pytest.raises(ValueError, match="patience"):
        EarlyStoppingCallback(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStoppingCallback(min_delta=-1.0)
