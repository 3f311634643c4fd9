"""Pass 7, dispatch tables: only callbacks that override an event, in plan order."""

from __future__ import annotations

from typing import Any

from conftest import LOADERS, Metric, Plain, experiment

import stagegraph as sg


def test_tables_list_only_overriding_callbacks_in_order() -> None:
    class Both(sg.Callback):
        order = sg.CallbackOrder.External

        def on_batch_end(self, runner: Any) -> None:
            pass

        def on_epoch_end(self, runner: Any) -> None:
            pass

    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS),
                  callbacks={"both": Both(), "acc": Metric(), "plain": Plain()})
    stage = sg.compile(exp, verbose=False).stage("train")
    order = [cb.name for cb in stage.callbacks]
    assert stage.dispatch["on_batch_end"] == tuple(
        n for n in order if n in {"both", "acc", "criterion", "metric_aggregation", "optimizer"})
    assert "plain" in stage.dispatch["on_epoch_end"]
    assert "plain" not in stage.dispatch["on_batch_end"]
    assert "on_batch_start" not in stage.dispatch
    assert "on_experiment_start" not in stage.dispatch


def test_event_stored_on_the_instance_counts() -> None:
    cb = sg.Callback()
    cb.on_loader_end = lambda runner: None  # type: ignore[method-assign]
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"x": cb})
    assert "x" in sg.compile(exp).stage("train").dispatch["on_loader_end"]
