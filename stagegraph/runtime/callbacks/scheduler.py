"""`SchedulerCallback`: steps the learning-rate scheduler per epoch or per train batch."""

from __future__ import annotations

from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder

MODES = ("epoch", "batch")


class SchedulerCallback(Callback):
    """Steps ``runner.scheduler`` after every epoch (``mode="epoch"``) or train batch (``"batch"``).

    A ``ReduceLROnPlateau`` is stepped once per epoch with the main valid metric,
    ``runner.valid_metrics[runner.main_metric]`` (so it needs ``mode="epoch"``). Runs in the
    Scheduler bucket, after the optimizer has stepped and the validation manager has filled
    ``valid_metrics``. A stage without a scheduler makes this callback a no-op.
    ``scheduler_key`` picks one scheduler from a dict of them; one callback per scheduler and stage
    (``claims``). It declares the read of the main valid metric (``valid_metric.{main_metric}``),
    which the plateau case needs: the compiler cannot tell a plateau scheduler from its factory.
    """

    order: ClassVar[int] = CallbackOrder.Scheduler
    reads: ClassVar[tuple[str, ...]] = ("valid_metric.{main_metric}",)
    kind: ClassVar[str | None] = "scheduler"
    needs: ClassVar[tuple[str, ...]] = ("scheduler",)

    def __init__(self, mode: str = "epoch", scheduler_key: str | None = None,
                 **declarations: Any) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        declarations.setdefault("claims", (f"scheduler:{scheduler_key or ''}",))
        super().__init__(**declarations)
        self.mode = mode
        self.scheduler_key = scheduler_key
        self._scheduler: Any = None
        self._per_batch = False

    def _resolve(self, runner: Any) -> Any:
        scheduler = runner.scheduler
        if scheduler is not None and self.scheduler_key is not None:
            scheduler = scheduler[self.scheduler_key]
        return scheduler

    def on_loader_start(self, runner: Any) -> None:
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        self._scheduler = self._resolve(runner)
        if self.mode == "batch" and isinstance(self._scheduler, ReduceLROnPlateau):
            raise ValueError("ReduceLROnPlateau steps on a valid metric once per epoch: use "
                             "SchedulerCallback(mode='epoch')")
        self._per_batch = (self.mode == "batch" and self._scheduler is not None
                           and bool(runner.is_train_loader))

    def on_batch_end(self, runner: Any) -> None:
        if self._per_batch:
            self._scheduler.step()

    def on_epoch_end(self, runner: Any) -> None:
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        scheduler = self._resolve(runner)
        if scheduler is None or self.mode != "epoch":
            return
        if isinstance(scheduler, ReduceLROnPlateau):
            metric = runner.main_metric
            if metric not in runner.valid_metrics:
                raise KeyError(f"ReduceLROnPlateau needs the main metric {metric!r} in "
                               f"runner.valid_metrics, which has {sorted(runner.valid_metrics)}")
            scheduler.step(float(runner.valid_metrics[metric]))
        else:
            scheduler.step()

    def __repr__(self) -> str:
        return f"SchedulerCallback(mode={self.mode!r})"
