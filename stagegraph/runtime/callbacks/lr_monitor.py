"""`LRMonitor`: the learning rate (and momentum or betas) of every optimizer param group, as
metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder
from stagegraph.runtime.callbacks.run_params import group_values


class LRMonitor(Callback):
    """Writes every param group's learning rate as an epoch metric, ``lr/group0``, ``lr/group1``...

    Beside it, where the group has them, ``momentum/groupN`` (SGD, RMSprop) or ``beta1/groupN``
    and ``beta2/groupN`` (Adam and its kin). The values are read at epoch end before the scheduler
    steps, so they are the ones the epoch trained with. With a dict of optimizers every key names
    the optimizer too (``lr/head/group0``); ``optimizer_key`` keeps one. ``log_batch=True`` also
    writes ``lr/groupN`` as a batch metric on train loaders (aggregated like any other, so the
    epoch also gets ``train_lr/groupN``, the mean over the loader: useful with a per-batch
    scheduler).

    It declares ``epoch_metric.lr/group0`` ... for the first ``groups`` groups (the number of
    groups is the optimizer's, which the compiler cannot see); momentum and betas depend on the
    optimizer's class and are written, not declared. Its keys differ from the ``lr`` of
    `OptimizerCallback` (the first group's only), so the two never write the same key.

    >>> LRMonitor(groups=2).writes
    ('epoch_metric.lr/group0', 'epoch_metric.lr/group1')
    """

    order: ClassVar[int] = CallbackOrder.Metric
    kind: ClassVar[str | None] = "lr_monitor"
    needs: ClassVar[tuple[str, ...]] = ("optimizer",)

    def __init__(self, groups: int = 1, optimizer_key: str | None = None,
                 log_batch: bool = False, **declarations: Any) -> None:
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be an int >= 1, not {groups!r}")
        where = f"{optimizer_key}/" if optimizer_key is not None else ""
        names = [f"lr/{where}group{i}" for i in range(groups)]
        writes = [f"epoch_metric.{name}" for name in names]
        if log_batch:
            writes += [f"metric.{name}" for name in names]
        declarations.setdefault("writes", tuple(writes))
        super().__init__(**declarations)
        self.groups = groups
        self.optimizer_key = optimizer_key
        self.log_batch = log_batch
        self._train = False

    def values(self, runner: Any) -> dict[str, float]:
        """The current values of the optimizer (or optimizers) the monitor watches."""
        optimizer = runner.optimizer
        if optimizer is None:
            return {}
        if isinstance(optimizer, Mapping):
            keys = [self.optimizer_key] if self.optimizer_key is not None else list(optimizer)
            return {k: v for key in keys for k, v in group_values(optimizer[key],
                                                                  f"{key}/").items()}
        return group_values(optimizer)

    def on_loader_start(self, runner: Any) -> None:
        self._train = self.log_batch and bool(runner.is_train_loader)

    def on_batch_end(self, runner: Any) -> None:
        if self._train:
            runner.batch_metrics.update(
                {k: v for k, v in self.values(runner).items() if k.startswith("lr/")})

    def on_epoch_end(self, runner: Any) -> None:
        runner.epoch_metrics.update(self.values(runner))

    def __repr__(self) -> str:
        return f"LRMonitor(groups={self.groups}, log_batch={self.log_batch})"
