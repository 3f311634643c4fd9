"""`ConsoleLogger`: progress bars per loader, a summary line per epoch, a table of best metrics."""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, TextIO

from tqdm.auto import tqdm

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder
from stagegraph.runtime.callbacks.aggregation import MetricAggregationCallback
from stagegraph.runtime.callbacks.run_params import split_metric
from stagegraph.runtime.callbacks.validation import ValidationManagerCallback

# Best metrics per stage, per runner: each stage has its own ConsoleLogger instance, and the one
# that receives on_experiment_end prints the table for all of them.
_HISTORY: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def format_value(value: Any) -> str:
    """Numbers as short text: ``0.1235``, ``1.2e-05``, ``12``.

    >>> format_value(0.123456), format_value(1.2e-5), format_value(12)
    ('0.1235', '1.2e-05', '12')
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def public_metrics(metrics: dict[str, Any], loaders: Iterable[str] = ()) -> dict[str, Any]:
    """``metrics`` without diagnostic ones, whose name (after a ``{loader}_`` prefix) starts with
    ``_`` — such as the timer's ``_timer/batch_time``."""
    loaders = tuple(loaders)
    return {key: value for key, value in metrics.items()
            if not split_metric(key, loaders)[1].startswith("_")}


def best_table(history: dict[str, dict[str, Any]]) -> str:
    """A text table: one row per stage with its best epoch and best valid metrics."""
    rows = {stage: row for stage, row in history.items() if row}
    if not rows:
        return ""
    columns = sorted({key for row in rows.values() for key in row if key != "epoch"})
    header = ["stage", "epoch", *columns]
    body = [[stage, format_value(row.get("epoch", "-")),
             *(format_value(row[c]) if c in row else "-" for c in columns)]
            for stage, row in rows.items()]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in (header, *body)]
    return "\n".join(["best valid metrics per stage:", *lines])


class ConsoleLogger(Callback):
    """Progress bars and summaries on the console (master rank only).

    Per loader, a tqdm bar: batches done, batches per second, samples per second and the running
    mean of ``metrics`` (default: ``loss`` and the stage's main metric). The bar is redrawn at most
    every ``refresh_interval`` seconds (``log_interval`` when ``file`` is not a terminal, so CI
    logs stay short), which keeps the per-batch cost to a counter and a clock read. A redraw reads
    the running means back from the device (`MetricAggregationCallback.running`): a host
    synchronisation, by design, once per refresh interval and never in the batches between. At
    stage start, one line per loader: whether it takes the batch fast path, and if not, why. Per
    epoch, one line with every epoch metric (diagnostics whose name starts with ``_`` left out) and
    ``(best)`` when the epoch is the best so far. At experiment end, a table of the best valid
    metrics of each stage. ``file`` defaults to ``sys.stdout``.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*", "valid.*")
    kind: ClassVar[str | None] = "console"

    def __init__(self, metrics: Sequence[str] = ("loss",), refresh_interval: float = 0.2,
                 log_interval: float = 10.0, file: TextIO | None = None,
                 **declarations: Any) -> None:
        super().__init__(**declarations)
        self.metrics = tuple(metrics)
        self.refresh_interval = refresh_interval
        self.log_interval = log_interval
        self.file = file
        self._bar: Any = None
        self._aggregation: MetricAggregationCallback | None = None
        self._shown: tuple[str, ...] = ()
        self._pending = 0
        self._interval = refresh_interval
        self._next = 0.0
        self._loader_t0 = 0.0
        self._epoch_t0: float | None = None
        self._stages: dict[str, dict[str, Any]] = {}  # the runner's best table, for checkpoints

    @property
    def _out(self) -> TextIO:
        return self.file if self.file is not None else sys.stdout

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def on_stage_start(self, runner: Any) -> None:
        kind = "inference" if runner.is_infer_stage else (
            f"main metric {runner.main_metric} "
            f"({'min' if runner.minimize_metric else 'max'})")
        self._print(f"stage {runner.stage_name!r}: {runner.num_epochs} epoch(s), {kind}")
        for decision in getattr(runner, "fast_path", {}).values():  # how each loader is read
            self._print(f"  {decision}")
        history = self._history(runner)
        for stage, best in self._stages.items():  # restored from a checkpoint: stages before
            history.setdefault(stage, best)
        self._stages = history

    def on_loader_start(self, runner: Any) -> None:
        now = time.perf_counter()
        if self._epoch_t0 is None:
            self._epoch_t0 = now
        self._aggregation = next((cb for cb in (runner.callbacks or {}).values()
                                  if isinstance(cb, MetricAggregationCallback)), None)
        self._shown = tuple(dict.fromkeys((*self.metrics, runner.main_metric)))
        desc = f"{runner.epoch}/{runner.num_epochs} {runner.loader_name}"
        if _is_tty(self._out):
            self._interval = self.refresh_interval
            self._bar = tqdm(total=runner.loader_len, file=self._out, desc=desc, leave=True,
                             dynamic_ncols=True, mininterval=0, miniters=1, unit="batch")
        else:
            self._interval = self.log_interval
            self._bar = LineProgress(runner.loader_len, self._out, desc)
        self._pending, self._loader_t0, self._next = 0, now, now + self._interval

    def on_batch_end(self, runner: Any) -> None:
        self._pending += 1
        now = time.perf_counter()
        if now >= self._next:
            self._refresh(runner, now)

    def _refresh(self, runner: Any, now: float, final: bool = False) -> None:
        self._next = now + self._interval
        if self._bar is None:
            return
        parts = []
        for key in self._shown:
            value = self._aggregation.running(key) if self._aggregation is not None else None
            if value is None and key in runner.batch_metrics:
                value = runner.batch_metrics[key]  # the latest batch's, without aggregation
            if value is not None:
                parts.append(f"{key}={format_value(value)}")
        elapsed = now - self._loader_t0
        if elapsed > 0:
            parts.append(f"{runner.loader_sample_step / elapsed:.0f} samples/s")
        self._bar.set_postfix_str(", ".join(parts), refresh=False)
        if final and isinstance(self._bar, LineProgress):
            self._bar.n += self._pending  # close() prints the last line
        else:
            self._bar.update(self._pending)
        self._pending = 0

    def on_loader_end(self, runner: Any) -> None:
        self._refresh(runner, time.perf_counter(), final=True)
        self._close_bar()

    def on_epoch_end(self, runner: Any) -> None:
        loaders = list(runner.loaders or ())
        metrics = public_metrics(runner.epoch_metrics, loaders)
        text = "  ".join(f"{k}={format_value(v)}" for k, v in sorted(metrics.items())) or "done"
        took = "" if self._epoch_t0 is None else f" in {time.perf_counter() - self._epoch_t0:.1f}s"
        best = "  (best)" if runner.is_best_valid else ""
        self._print(f"[{runner.stage_name}] epoch {runner.epoch}/{runner.num_epochs}{took}: "
                    f"{text}{best}")
        self._epoch_t0 = None

    def on_stage_end(self, runner: Any) -> None:
        best = public_metrics(dict(runner.best_valid_metrics))
        validation = next((cb for cb in (runner.callbacks or {}).values()
                           if isinstance(cb, ValidationManagerCallback)), None)
        if best and validation is not None and validation.best_epoch is not None:
            best = {"epoch": validation.best_epoch, **best}
        self._history(runner)[runner.stage_name] = best

    def on_experiment_end(self, runner: Any) -> None:
        table = best_table(self._history(runner))
        if table:
            self._print(table)

    def on_exception(self, runner: Any) -> None:
        self._close_bar()

    def state_dict(self) -> dict[str, Any]:
        """The best metrics of the stages done so far, so a resumed run prints the whole table."""
        return {"stages": {stage: dict(best) for stage, best in self._stages.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._stages = {str(k): dict(v) for k, v in (state.get("stages") or {}).items()}

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _history(self, runner: Any) -> dict[str, dict[str, Any]]:
        try:
            return _HISTORY.setdefault(runner, {})
        except TypeError:  # a runner that cannot be weakly referenced: this instance only
            return self.__dict__.setdefault("_own_history", {})

    def __repr__(self) -> str:
        return f"ConsoleLogger(metrics={self.metrics})"


class LineProgress:
    """The progress bar for logs (a file or pipe, not a terminal): one plain line per refresh,
    no carriage returns, so CI logs read top to bottom. Mirrors the part of tqdm used here."""

    def __init__(self, total: int | None, file: TextIO, desc: str) -> None:
        self.total, self.file, self.desc = total, file, desc
        self.n, self.postfix = 0, ""
        self._t0 = time.perf_counter()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        self._line()

    def close(self) -> None:
        self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._t0
        of = f"/{self.total}" if self.total is not None else ""
        rate = f", {self.n / elapsed:.1f} batch/s" if elapsed > 0 else ""
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} batches in {elapsed:.1f}s{rate}{tail}",
              file=self.file, flush=True)


def _is_tty(stream: Any) -> bool:
    if type(stream).__module__.startswith("ipykernel."):  # Jupyter: tqdm.auto draws a widget
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
