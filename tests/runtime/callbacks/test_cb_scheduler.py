"""SchedulerCallback: per epoch, per train batch, and ReduceLROnPlateau on the main metric."""

from __future__ import annotations

import pytest
import torch
from cb_helpers import batches, fire, make_runner, run_loader
from torch import nn

from stagegraph.runtime.callbacks import SchedulerCallback

# These tests step schedulers without training, which torch warns about.
pytestmark = pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")


def _runner(scheduler_factory, **overrides):  # type: ignore[no-untyped-def]
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    return make_runner(model=model, optimizer=optimizer,
                       scheduler=scheduler_factory(optimizer), **overrides)


def _lr(runner) -> float:  # type: ignore[no-untyped-def]
    return float(runner.optimizer.param_groups[0]["lr"])


def test_epoch_mode_steps_once_per_epoch_not_per_batch() -> None:
    runner = _runner(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5))
    callback = SchedulerCallback(mode="epoch")
    run_loader(runner, [callback], "train", batches([2, 2, 2]))
    assert _lr(runner) == 1.0
    fire("on_epoch_end", runner, [callback])
    assert _lr(runner) == 0.5


def test_batch_mode_steps_after_each_train_batch_only() -> None:
    runner = _runner(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5))
    callback = SchedulerCallback(mode="batch")
    run_loader(runner, [callback], "train", batches([2, 2, 2]))
    assert _lr(runner) == 0.125
    run_loader(runner, [callback], "valid", batches([2, 2]))
    fire("on_epoch_end", runner, [callback])
    assert _lr(runner) == 0.125


def test_plateau_gets_the_main_valid_metric() -> None:
    runner = _runner(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, mode="max", patience=0, factor=0.1), main_metric="accuracy", minimize_metric=False)
    callback = SchedulerCallback()
    for accuracy, lr in ((0.5, 1.0), (0.6, 1.0), (0.55, 0.1)):
        runner.valid_metrics = {"accuracy": accuracy, "loss": 1.0}
        callback.on_loader_start(runner)
        fire("on_epoch_end", runner, [callback])
        assert _lr(runner) == pytest.approx(lr)


def test_plateau_without_the_main_metric_is_a_clear_error() -> None:
    runner = _runner(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o),
                     main_metric="f1", valid_metrics={"loss": 1.0})
    with pytest.raises(KeyError, match="'f1'"):
        SchedulerCallback().on_epoch_end(runner)


def test_plateau_in_batch_mode_is_refused() -> None:
    runner = _runner(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o))
    with pytest.raises(ValueError, match="mode='epoch'"):
        SchedulerCallback(mode="batch").on_loader_start(runner)
    with pytest.raises(ValueError, match="mode"):
        SchedulerCallback(mode="step")


def test_no_scheduler_is_a_no_op() -> None:
    runner = make_runner(scheduler=None)
    callback = SchedulerCallback(mode="batch")
    callback.on_loader_start(runner)
    callback.on_batch_end(runner)
    callback.on_epoch_end(runner)
