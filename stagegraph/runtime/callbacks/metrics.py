"""Batch metric callbacks: accuracy, top-k accuracy and an adapter for `torchmetrics` metrics."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder

if TYPE_CHECKING:
    import torch

TORCHMETRICS_HINT = ("TorchMetricsCallback needs the 'torchmetrics' package: "
                     "pip install 'stagegraph[metrics]' (or pip install torchmetrics)")


def topk_names(metric_key: str, topk: Iterable[int]) -> tuple[str, ...]:
    """Metric names for ``topk``: ``metric_key`` for k=1, ``f"{metric_key}{k:02d}"`` otherwise.

    >>> topk_names("accuracy", (1, 3, 10))
    ('accuracy', 'accuracy03', 'accuracy10')
    """
    return tuple(metric_key if k == 1 else f"{metric_key}{k:02d}" for k in topk)


class AccuracyCallback(Callback):
    """Accuracy and top-k accuracy of ``output[input_key]`` against ``input[target_key]``.

    Outputs are scores of shape ``(batch, classes)``; targets are class indices ``(batch,)`` or
    ``(batch, 1)``, or one-hot / probabilities ``(batch, classes)``. Scores of shape ``(batch,)``
    or ``(batch, 1)`` are binary: the prediction is ``score > threshold``. For each ``k`` in
    ``topk`` the share of samples whose target is among the ``k`` highest scores is stored, as a
    detached 0-dim tensor, under ``metric_key`` for k=1 and ``f"{metric_key}{k:02d}"`` otherwise
    (``accuracy03``).
    """

    order: ClassVar[int] = CallbackOrder.Metric
    kind: ClassVar[str | None] = "accuracy"

    def __init__(
        self,
        input_key: str = "logits",
        target_key: str = "targets",
        metric_key: str = "accuracy",
        topk: Iterable[int] = (1,),
        threshold: float = 0.0,
        **declarations: Any,
    ) -> None:
        ks = tuple(sorted(set(topk)))
        if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
            raise ValueError(f"topk must hold ints >= 1, not {topk!r}")
        self.names = topk_names(metric_key, ks)
        declarations.setdefault("reads", (f"output.{input_key}", f"batch.{target_key}"))
        declarations.setdefault("writes", tuple(f"metric.{n}" for n in self.names))
        super().__init__(**declarations)
        self.input_key = input_key
        self.target_key = target_key
        self.metric_key = metric_key
        self.topk = ks
        self.threshold = threshold

    def on_batch_end(self, runner: Any) -> None:
        scores = runner.output[self.input_key].detach()
        targets = runner.input[self.target_key]
        metrics = runner.batch_metrics
        if scores.ndim == 1 or scores.shape[1] == 1:
            hits = (scores.reshape(-1) > self.threshold) == targets.reshape(-1).bool()
            metrics[self.names[0]] = hits.float().mean()
            return
        if targets.ndim == scores.ndim:  # one-hot rows, or a column of class indices
            targets = targets.argmax(1) if targets.shape[1] == scores.shape[1] else \
                targets.reshape(-1)
        if self.topk == (1,):
            metrics[self.names[0]] = (scores.argmax(1) == targets).float().mean()
            return
        kmax = min(self.topk[-1], scores.shape[1])
        hits = scores.topk(kmax, dim=1).indices == targets.unsqueeze(1)
        # Top-k indices are distinct, so each row has at most one hit and its cumulative sum
        # says whether the target is within the first j+1 predictions.
        found = hits.cumsum(1).float().mean(0)
        for k, name in zip(self.topk, self.names, strict=True):
            metrics[name] = found[min(k, kmax) - 1]

    def __repr__(self) -> str:
        return f"AccuracyCallback(metric_key={self.metric_key!r}, topk={self.topk})"


class TorchMetricsCallback(Callback):
    """Adapter for any scalar-valued ``torchmetrics.Metric``.

    Per batch, ``metric(preds, target)`` updates the metric's state and (with ``log_batch=True``)
    stores the batch value in ``batch_metrics[metric_key]``. At loader end the metric's
    ``compute()`` over the whole loader goes to ``loader_metrics[metric_key]``, which the metric
    aggregation keeps instead of the mean of batch values (exact for F1, AUROC and other
    non-decomposable metrics). ``metric_key`` defaults to the metric's class name in snake case
    (``MulticlassF1Score`` -> ``multiclass_f1_score``). torchmetrics is imported when the callback
    is built; without it the constructor raises ``ImportError``.
    """

    order: ClassVar[int] = CallbackOrder.Metric
    kind: ClassVar[str | None] = "torchmetrics"

    def __init__(
        self,
        metric: Any,
        input_key: str = "logits",
        target_key: str = "targets",
        metric_key: str | None = None,
        log_batch: bool = True,
        **declarations: Any,
    ) -> None:
        try:
            import torchmetrics
        except ImportError as err:
            raise ImportError(TORCHMETRICS_HINT) from err
        if not isinstance(metric, torchmetrics.Metric):
            raise TypeError(f"metric must be a torchmetrics.Metric instance, not {metric!r}")
        key = metric_key or _snake(type(metric).__name__)
        writes = (f"metric.{key}",) if log_batch else ()
        declarations.setdefault("reads", (f"output.{input_key}", f"batch.{target_key}"))
        declarations.setdefault("writes", (*writes, f"loader_metric.{key}"))
        super().__init__(**declarations)
        self.metric = metric
        self.input_key = input_key
        self.target_key = target_key
        self.metric_key = key
        self.log_batch = log_batch
        self._updated = False

    def on_loader_start(self, runner: Any) -> None:
        self.metric.reset()
        if runner.device is not None:
            self.metric.to(runner.device)
        self._updated = False

    def on_batch_end(self, runner: Any) -> None:
        preds = runner.output[self.input_key].detach()
        target = runner.input[self.target_key]
        if self.log_batch:
            runner.batch_metrics[self.metric_key] = _scalar(self.metric(preds, target),
                                                            self.metric_key)
        else:
            self.metric.update(preds, target)
        self._updated = True

    def loader_state_dict(self) -> dict[str, Any]:
        """The metric's accumulated states (torchmetrics' ``metric_state``)."""
        return {"updated": self._updated, "count": int(self.metric._update_count),
                "states": dict(self.metric.metric_state)}

    def load_loader_state_dict(self, state: dict[str, Any]) -> None:
        device = self.metric.device
        for name, value in state["states"].items():
            setattr(self.metric, name, [v.to(device) for v in value] if isinstance(value, list)
                    else value.to(device))
        self.metric._update_count = int(state["count"])
        self.metric._computed = None
        self._updated = bool(state["updated"])

    def on_loader_end(self, runner: Any) -> None:
        if self._updated:
            value = _scalar(self.metric.compute(), self.metric_key)
            runner.loader_metrics[self.metric_key] = float(value)

    def __repr__(self) -> str:
        return f"TorchMetricsCallback({type(self.metric).__name__}, metric_key={self.metric_key!r})"


def _scalar(value: Any, key: str) -> torch.Tensor:
    import torch

    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError(f"metric {key!r} is not scalar-valued ({value!r}); use one that returns "
                         "a single number, e.g. average='macro'")
    return value.detach().reshape(())


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
