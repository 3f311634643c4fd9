"""Text the console prints: values, the per-epoch metric table, the best table, the device line,
and progress as plain lines for logs."""

from __future__ import annotations

import fnmatch
import io
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from stagegraph.runtime.callbacks.run_params import split_metric


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
    names = list(loaders)
    return {key: value for key, value in metrics.items()
            if not split_metric(key, names)[1].startswith("_")}


def chosen(names: Iterable[str], main_metric: str | None, shown: Sequence[str] | None
           ) -> list[str]:
    """The metric names to show, in order: with ``shown`` (names or ``fnmatch`` patterns), the
    names it matches in its order; else the main metric first, then the rest sorted. Names
    starting with ``_`` (diagnostics) only when ``shown`` names them exactly.

    >>> chosen(["loss", "accuracy", "_t"], "accuracy", None)
    ['accuracy', 'loss']
    >>> chosen(["loss", "accuracy", "accuracy03"], "accuracy", ["loss", "acc*"])
    ['loss', 'accuracy', 'accuracy03']
    """
    available = sorted(set(names))
    if shown is None:
        public = [n for n in available if not n.startswith("_")]
        first = [main_metric] if main_metric in public else []
        return first + [n for n in public if n != main_metric]
    order: list[str] = []
    for pattern in shown:
        hits = [pattern] if pattern in available else [
            n for n in available if not n.startswith("_") and fnmatch.fnmatchcase(n, pattern)]
        order += [n for n in hits if n not in order]
    return order


def unmatched(names: Iterable[str], shown: Sequence[str]) -> list[str]:
    """The entries of ``shown`` that pick none of ``names``.

    >>> unmatched(["loss", "accuracy"], ["loss", "f1", "acc*"])
    ['f1']
    """
    available = set(names)
    return [pattern for pattern in shown if not chosen(available, None, [pattern])]


def epoch_table(metrics: dict[str, Any], loaders: Sequence[str], main_metric: str | None,
                shown: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """The epoch-level metrics as ``name=value`` text (``lr=0.001``), and the loader metrics
    as aligned rows: one per metric, one column per loader.

    >>> line, rows = epoch_table({"lr": 0.1, "train_loss": 0.5, "valid_loss": 0.25,
    ...                           "valid_acc": 0.9}, ["train", "valid"], "acc")
    >>> line
    'lr=0.1'
    >>> print("\\n".join(rows))
    metric  train  valid
    acc     -      0.9
    loss    0.5    0.25
    """
    columns: dict[str, dict[str, Any]] = {}
    plain: dict[str, Any] = {}
    for key, value in metrics.items():
        loader, name = split_metric(key, loaders)
        (plain if loader is None else columns.setdefault(name, {}))[
            key if loader is None else loader] = value
    names = chosen([*columns, *plain], main_metric, shown)
    line = "  ".join(f"{n}={format_value(plain[n])}" for n in names if n in plain)
    rows = [n for n in names if n in columns]
    used = [loader for loader in loaders if any(loader in columns[n] for n in rows)]
    if not rows:
        return line, []
    table = [["metric", *used]] + [
        [name, *(format_value(columns[name][loader]) if loader in columns[name] else "-"
                 for loader in used)] for name in rows]
    return line, aligned(table)


def aligned(table: list[list[str]]) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in table]


def best_table(history: dict[str, dict[str, Any]], shown: Sequence[str] | None = None) -> str:
    """A text table: one row per stage with its best epoch and best valid metrics (those
    ``shown`` picks, as in `chosen`; all of them, sorted, without it)."""
    rows = {stage: row for stage, row in history.items() if row}
    if not rows:
        return ""
    columns = sorted({key for row in rows.values() for key in row if key != "epoch"})
    if shown is not None:
        columns = chosen(columns, None, shown)
    header = ["stage", "epoch", *columns]
    body = [[stage, format_value(row.get("epoch", "-")),
             *(format_value(row[c]) if c in row else "-" for c in columns)]
            for stage, row in rows.items()]
    return "\n".join(["best valid metrics per stage:", *aligned([header, *body])])


def precision_text(precision: str, device: Any) -> str:
    """``precision`` and what it means on ``device``: ``amp (float16 autocast, GradScaler)``."""
    from stagegraph.runtime.precision import autocast_dtype

    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return precision
    kind = str(dtype).removeprefix("torch.")
    scaler = ", GradScaler" if kind == "float16" else ""
    return f"{precision} ({kind} autocast{scaler})"


def device_line(runner: Any) -> str:
    """Which device the run uses (and what ``auto`` chose), and the precision of each stage."""
    asked = str(getattr(runner.plan, "device", "") or "")
    device = str(runner.device)
    chose = f" (device {asked!r} chose it)" if asked and asked != device else ""
    stages = [(s.name, s.precision) for s in runner.plan.stages]
    precisions = {p for _, p in stages}
    if len(precisions) == 1:
        precision = f"precision {precision_text(precisions.pop(), runner.device)}"
    else:
        precision = "precision " + ", ".join(
            f"{name} {precision_text(p, runner.device)}" for name, p in stages)
    return (f"experiment {runner.plan.experiment!r}: device {device}{chose}, {precision}"
            f"{distributed_text()}")


def distributed_text() -> str:
    """``, 2 processes (gloo)`` in an initialised process group, else nothing."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return ""
    return f", {dist.get_world_size()} processes ({dist.get_backend()})"


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


def is_tty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal a bar can be drawn in: a pseudo-terminal of zero columns
    (``script``, some CI runners) is not, since tqdm would fit its bar into nothing."""
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return True  # a terminal whose size cannot be read: tqdm copes
