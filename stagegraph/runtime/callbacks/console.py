"""`ConsoleLogger`: progress bars per loader, a metric table per epoch, what decided the run
(device, early stops, best checkpoints) and a table of best metrics, on stderr."""

from __future__ import annotations

import sys
import time
import warnings
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar, TextIO

from tqdm.auto import tqdm

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder
from stagegraph.runtime.callbacks.aggregation import MetricAggregationCallback
from stagegraph.runtime.callbacks.checkpoint import CheckpointCallback
from stagegraph.runtime.callbacks.console_table import (
    LineProgress,
    best_table,
    device_line,
    epoch_table,
    format_value,
    is_tty,
    public_metrics,
    unmatched,
)
from stagegraph.runtime.callbacks.early_stopping import EarlyStoppingCallback
from stagegraph.runtime.callbacks.run_params import split_metric
from stagegraph.runtime.callbacks.validation import ValidationManagerCallback
from stagegraph.runtime.errors import StagegraphWarning

__all__ = ["ConsoleLogger", "LineProgress", "best_table", "format_value", "public_metrics"]

#: In a Jupyter kernel with ipywidgets, ``tqdm.auto`` is the notebook's widget bar.
_NOTEBOOK = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)

# Best metrics per stage, per runner: each stage has its own ConsoleLogger instance, and the one
# that receives on_experiment_end prints the table for all of them.
_HISTORY: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


class ConsoleLogger(Callback):
    """Progress bars and summaries on the console (master rank only), on ``sys.stderr`` unless
    ``file`` says otherwise, so the run's stdout stays clean for piping (in a Jupyter kernel, on
    ``sys.stdout``: a notebook shows stderr on a red ground).

    At experiment start, one line: the device the run uses (and what ``device="auto"`` chose) and
    the precision (``fp32``, ``amp``, ``bf16``, with the autocast dtype it means there). At stage
    start, one line per loader: whether it takes the batch fast path, and if not, why. Per
    loader, a progress bar (``tqdm.auto``: a widget in Jupyter with ipywidgets, text elsewhere):
    batches done, batches per second, samples per second and the running mean of ``metrics``
    (default: ``loss`` and the stage's main metric). The bar is redrawn at most every
    ``refresh_interval`` seconds (``log_interval`` when the output is not a terminal, so CI logs
    stay short, as plain lines), which keeps the per-batch cost to a counter and a clock read. A
    redraw reads the running means back from the device (`MetricAggregationCallback.running`): a
    host synchronisation, by design, once per refresh interval and never in the batches between.

    Per epoch, a table: one row per metric (the main metric first, then the rest sorted; or the
    names and ``fnmatch`` patterns of ``metrics_shown``, in their order), one column per loader,
    after a headline with the epoch-level metrics (``lr``) and ``(best)`` when the epoch is the
    best so far. Diagnostics (names starting with ``_``) are left out unless ``metrics_shown``
    names them. A line when a checkpoint becomes the stage's best (`CheckpointCallback.new_best`)
    and when early stopping ends a stage (`EarlyStoppingCallback.stopped`: the metric, its best
    value and epoch, the patience). At experiment end, a table of the best valid metrics of each
    stage (those ``metrics_shown`` picks).
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*", "valid.*")
    kind: ClassVar[str | None] = "console"

    def __init__(self, metrics: Sequence[str] = ("loss",), refresh_interval: float = 0.2,
                 log_interval: float = 10.0, file: TextIO | None = None,
                 metrics_shown: Sequence[str] | None = None, **declarations: Any) -> None:
        super().__init__(**declarations)
        self.metrics = _names("metrics", metrics)
        self.metrics_shown = None if metrics_shown is None else _names("metrics_shown",
                                                                       metrics_shown)
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
        self._said: set[tuple[str, int]] = set()  # best checkpoints already named
        self._checked = False  # metrics_shown checked against the stage's metrics
        self._stages: dict[str, dict[str, Any]] = {}  # the runner's best table, for checkpoints

    @property
    def _out(self) -> TextIO:
        if self.file is not None:
            return self.file
        # A notebook shows stderr on a red ground, and has no pipe to keep clean: stdout there.
        return sys.stdout if type(sys.stdout).__module__.startswith("ipykernel") else sys.stderr

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def on_experiment_start(self, runner: Any) -> None:
        self._print(device_line(runner))

    def on_stage_start(self, runner: Any) -> None:
        kind = "inference" if runner.is_infer_stage else (
            f"main metric {runner.main_metric} "
            f"({'min' if runner.minimize_metric else 'max'})")
        self._print(f"stage {runner.stage_name!r}: {runner.num_epochs} epoch(s), {kind}")
        self._checked = False
        for decision in getattr(runner, "fast_path", {}).values():  # how each loader is read
            self._print(f"  {decision}")
        history = self._history(runner)
        for stage, best in self._stages.items():  # restored from a checkpoint: stages before
            history.setdefault(stage, best)
        self._stages = history

    def on_loader_start(self, runner: Any) -> None:
        self._notes(runner)
        now = time.perf_counter()
        if self._epoch_t0 is None:
            self._epoch_t0 = now
        self._aggregation = next((cb for cb in (runner.callbacks or {}).values()
                                  if isinstance(cb, MetricAggregationCallback)), None)
        self._shown = tuple(dict.fromkeys((*self.metrics, runner.main_metric)))
        desc = f"{runner.epoch}/{runner.num_epochs} {runner.loader_name}"
        self._interval = self.refresh_interval
        if self.file is None and _NOTEBOOK:  # tqdm.auto draws a widget, wherever stderr is
            self._bar = tqdm(total=runner.loader_len, desc=desc, leave=True, unit="batch")
        elif is_tty(self._out):
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
        line, rows = epoch_table(dict(runner.epoch_metrics), loaders, runner.main_metric,
                                 self.metrics_shown)
        took = "" if self._epoch_t0 is None else f" in {time.perf_counter() - self._epoch_t0:.1f}s"
        text = line or ("" if rows else "done")
        head = f"[{runner.stage_name}] epoch {runner.epoch}/{runner.num_epochs}{took}"
        head += f": {text}" if text else ""
        self._print(f"{head}  (best)" if runner.is_best_valid else head)
        for row in rows:
            self._print(f"  {row}")
        self._epoch_t0 = None
        if self.metrics_shown is not None and runner.epoch_metrics and not self._checked:
            self._checked = True
            self._check_shown(runner, loaders)

    def _check_shown(self, runner: Any, loaders: list[str]) -> None:
        """Warn (once per stage) about the ``metrics_shown`` entries that match no metric."""
        assert self.metrics_shown is not None
        names = sorted({split_metric(key, loaders)[1] for key in runner.epoch_metrics})
        missing = unmatched(names, self.metrics_shown)
        if missing:
            public = ", ".join(n for n in names if not n.startswith("_"))
            warnings.warn(StagegraphWarning(
                f"stage {runner.stage_name!r}, ConsoleLogger: metrics_shown {missing} matches "
                f"none of the stage's epoch metrics ({public}); fix the name, or use a pattern "
                "such as 'acc*'"), stacklevel=2)

    def on_stage_end(self, runner: Any) -> None:
        self._notes(runner)
        self._early_stop(runner)
        best = public_metrics(dict(runner.best_valid_metrics))
        validation = next((cb for cb in (runner.callbacks or {}).values()
                           if isinstance(cb, ValidationManagerCallback)), None)
        best_epoch = None if validation is None else validation.best_epoch
        if best and best_epoch is not None:
            best = {"epoch": best_epoch, **best}
        self._history(runner)[runner.stage_name] = best
        self._best_loaded(runner, best_epoch)

    def _best_loaded(self, runner: Any, best_epoch: int | None) -> None:
        """Say that the stage hands on its best weights, not its last (``load_best_on_stage_end``,
        which the checkpoint callback does after this logger)."""
        for callback in (runner.callbacks or {}).values():
            if (not isinstance(callback, CheckpointCallback)
                    or not callback.load_best_on_stage_end or best_epoch in (None, runner.epoch)
                    or (callback.folder is not None and callback.best is None)):
                continue
            where = ("kept in memory" if callback.folder is None or callback.best is None
                     else f"{callback.folder.name}/{callback.best[0]}")
            self._print(f"[{runner.stage_name}] load_best_on_stage_end: the model goes on with "
                        f"the weights of epoch {best_epoch} ({where}), not of its last epoch "
                        f"{runner.epoch}")

    def on_experiment_end(self, runner: Any) -> None:
        table = best_table(self._history(runner), self.metrics_shown)
        if table:
            self._print(table)

    def _notes(self, runner: Any) -> None:
        """Name the checkpoints that became best since the last note (they are chosen after
        this logger's epoch end, so they are said at the next loader or stage end)."""
        for name, callback in (runner.callbacks or {}).items():
            record = getattr(callback, "new_best", None)
            if not isinstance(callback, CheckpointCallback) or record is None:
                continue
            if (name, record.global_epoch) not in self._said:
                self._said.add((name, record.global_epoch))
                self._print(f"[{runner.stage_name}] {record}")

    def _early_stop(self, runner: Any) -> None:
        """Say why a stage ended before its last epoch."""
        if runner.is_infer_stage or runner.epoch >= runner.num_epochs:
            return
        stops = [cb.stopped for cb in (runner.callbacks or {}).values()
                 if isinstance(cb, EarlyStoppingCallback) and cb.stopped is not None]
        for stop in stops:
            self._print(f"[{runner.stage_name}] {stop}")
        if not stops and getattr(runner, "stopped", None) is None:
            self._print(f"[{runner.stage_name}] the stage ended after epoch {runner.epoch} of "
                        f"{runner.num_epochs}: a callback (or another rank) set need_early_stop")

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
        shown = "" if self.metrics_shown is None else f", metrics_shown={self.metrics_shown}"
        return f"ConsoleLogger(metrics={self.metrics}{shown})"


def _names(argument: str, names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple of strings; a single string or a non-string is a usage error."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"ConsoleLogger({argument}=...) takes a list of metric names, such as "
                         f"[\"loss\", \"accuracy\"], not {names!r}")
    return tuple(names)
