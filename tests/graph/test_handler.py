"""Batch handlers: the supervised default and declared user functions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import stagegraph as sg
from stagegraph.graph.handler import FunctionHandler, as_handler


def test_supervised_handler_names_tuple_batches() -> None:
    handler = sg.SupervisedHandler("images", "labels", "scores")
    assert handler.reads == ("batch.images", "batch.labels")
    assert handler.writes == ("output.scores",)
    runner = SimpleNamespace(model=lambda x: x * 2, input=None)
    output = handler(runner, (3, 7))
    assert output == {"scores": 6}
    assert runner.input == {"images": 3, "labels": 7}
    runner.input = "unchanged"
    assert handler(runner, {"images": 1, "labels": 0}) == {"scores": 2}
    assert runner.input == "unchanged"


def test_decorated_function_declares_dataflow() -> None:
    @sg.handler(reads=["batch.images"], writes=["output.fake"])
    def step(runner: Any, batch: Any) -> Any:
        return {"fake": batch}

    assert isinstance(step, FunctionHandler) and step.declared
    assert step(None, 1) == {"fake": 1}
    plain = as_handler(lambda runner, batch: None)
    assert isinstance(plain, FunctionHandler) and not plain.declared
    assert as_handler(3) is None
