"""`TimerCallback`: wall-clock time per batch and per loader, as (diagnostic) metrics."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder

BATCH_TIME = "_timer/batch_time"
HANDLER_TIME = "_timer/handler_time"
THROUGHPUT = "_timer/samples_per_sec"
LOADER_TIME = "_timer/loader_time"


class TimerCallback(Callback):
    """Times batches and loaders into the metrics, which aggregate and log like any other.

    Batch metrics (seconds, floats):

    - ``_timer/batch_time``: one full cycle, from this callback's ``on_batch_end`` of the previous
      batch (or the loader start) to this one — data loading, forward, backward, step, logging;
    - ``_timer/handler_time``: from ``on_batch_start`` to ``on_batch_end`` — the batch handler
      (the forward pass; the Internal bucket puts this callback first in ``on_batch_end``);
    - ``_timer/samples_per_sec``: ``batch_size / batch_time``.

    Loader metrics, set at loader end (so the aggregation keeps them over batch means):
    ``_timer/loader_time`` (seconds) and ``_timer/samples_per_sec`` (samples over the loader
    time). They reach ``epoch_metrics`` as ``{loader}__timer/...``. Names start with ``_``: the
    console summary leaves them out, the CSV and TensorBoard loggers keep them.
    """

    order: ClassVar[int] = CallbackOrder.Internal
    writes: ClassVar[tuple[str, ...]] = (
        f"metric.{BATCH_TIME}", f"metric.{HANDLER_TIME}", f"metric.{THROUGHPUT}",
        f"loader_metric.{LOADER_TIME}", f"loader_metric.{THROUGHPUT}",
    )
    kind: ClassVar[str | None] = "timer"

    def __init__(self, **declarations: Any) -> None:
        super().__init__(**declarations)
        self._loader_start = self._last = self._batch_start = 0.0

    def on_loader_start(self, runner: Any) -> None:
        self._loader_start = self._last = time.perf_counter()

    def on_batch_start(self, runner: Any) -> None:
        self._batch_start = time.perf_counter()

    def on_batch_end(self, runner: Any) -> None:
        now = time.perf_counter()
        cycle = now - self._last
        metrics = runner.batch_metrics
        metrics[BATCH_TIME] = cycle
        metrics[HANDLER_TIME] = now - self._batch_start
        metrics[THROUGHPUT] = runner.batch_size / cycle if cycle > 0 else 0.0
        self._last = now

    def on_loader_end(self, runner: Any) -> None:
        elapsed = time.perf_counter() - self._loader_start
        runner.loader_metrics[LOADER_TIME] = elapsed
        runner.loader_metrics[THROUGHPUT] = (runner.loader_sample_step / elapsed
                                             if elapsed > 0 else 0.0)

    def __repr__(self) -> str:
        return "TimerCallback()"
