"""`CriterionCallback`: the loss of a batch, as a tensor the optimizer callback back-propagates."""

from __future__ import annotations

from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder


class CriterionCallback(Callback):
    """``batch_metrics[metric_key] = criterion(output[input_key], input[target_key])``.

    The value keeps its graph (it requires grad on train loaders) so that
    :class:`OptimizerCallback` can call ``backward`` on it. ``criterion_key`` picks one criterion
    when ``runner.criterion`` is a dict of them. One criterion callback per loss key and stage
    (``claims``).

    >>> CriterionCallback(input_key="logits", target_key="targets").writes
    ('metric.loss',)
    """

    order: ClassVar[int] = CallbackOrder.Metric
    kind: ClassVar[str | None] = "criterion"
    needs: ClassVar[tuple[str, ...]] = ("criterion",)

    def __init__(
        self,
        input_key: str = "logits",
        target_key: str = "targets",
        metric_key: str = "loss",
        criterion_key: str | None = None,
        **declarations: Any,
    ) -> None:
        declarations.setdefault("reads", (f"output.{input_key}", f"batch.{target_key}"))
        declarations.setdefault("writes", (f"metric.{metric_key}",))
        declarations.setdefault("claims", (f"criterion:{metric_key}",))
        super().__init__(**declarations)
        self.input_key = input_key
        self.target_key = target_key
        self.metric_key = metric_key
        self.criterion_key = criterion_key

    def on_batch_end(self, runner: Any) -> None:
        criterion = runner.criterion
        if self.criterion_key is not None:
            criterion = criterion[self.criterion_key]
        runner.batch_metrics[self.metric_key] = criterion(
            runner.output[self.input_key], runner.input[self.target_key]
        )

    def __repr__(self) -> str:
        return (f"CriterionCallback(input_key={self.input_key!r}, "
                f"target_key={self.target_key!r}, metric_key={self.metric_key!r})")
