"""The `Callback` base class: class declarations, instance overrides, overridden events."""

from __future__ import annotations

from typing import Any

import stagegraph as sg
from stagegraph.graph.callback import overridden_events
from stagegraph.graph.enums import LoaderKind, bucket_name, is_infer_stage


class Accuracy(sg.Callback):
    order = sg.CallbackOrder.Metric
    reads = ("output.logits", "batch.targets")
    writes = ("metric.accuracy",)

    def on_batch_end(self, runner: Any) -> None:
        pass

    def on_stage_start(self, runner: Any) -> None:
        pass


def test_class_declarations_and_instance_overrides() -> None:
    plain = Accuracy()
    assert plain.order == 20 and plain.reads == ("output.logits", "batch.targets")
    assert plain.node is sg.CallbackNode.all and plain.scope is sg.CallbackScope.stage
    tuned = Accuracy(order=25, after="criterion", writes=["metric.acc"], node="master")
    assert tuned.order == 25
    assert tuned.after == ("criterion",)
    assert tuned.writes == ("metric.acc",)
    assert tuned.node == "master"  # validated by the compiler, not here
    assert Accuracy.writes == ("metric.accuracy",)  # the class is untouched


def test_overridden_events_in_event_order() -> None:
    assert overridden_events(Accuracy()) == ("on_stage_start", "on_batch_end")
    assert overridden_events(sg.Callback()) == ()

    class Child(Accuracy):
        def on_exception(self, runner: Any) -> None:
            pass

    assert overridden_events(Child()) == ("on_stage_start", "on_batch_end", "on_exception")


def test_default_state_protocol() -> None:
    cb = sg.Callback()
    assert cb.state_dict() == {}
    cb.load_state_dict({})


def test_vocabulary() -> None:
    assert [int(o) for o in sg.CallbackOrder] == [0, 20, 40, 60, 80, 100, 120, 200]
    assert [e.value for e in sg.Event][:2] == ["on_experiment_start", "on_stage_start"]
    assert LoaderKind.of("train_extra") is LoaderKind.train
    assert LoaderKind.of("valid2") is LoaderKind.valid
    assert LoaderKind.of("infer") is LoaderKind.infer
    assert LoaderKind.of("holdout") is LoaderKind.unknown
    assert is_infer_stage("infer_test") and not is_infer_stage("train")
    assert bucket_name(60) == "Optimizer (60)" and bucket_name(61) == "61"
