"""`CSVLogger`: one row of epoch metrics per epoch in ``logdir/logs/{stage}.csv``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar, TextIO

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder
from stagegraph.runtime.errors import ResumeWarning

FIXED_COLUMNS = ("stage", "epoch", "global_epoch")


class CSVLogger(Callback):
    """Writes ``logdir/logs/{stage}.csv`` (master rank only).

    Columns: ``stage``, ``epoch``, ``global_epoch``, then every key of ``runner.epoch_metrics``
    in sorted order (``train_loss``, ``valid_accuracy``, ``lr``...). Each row is flushed and
    fsync-ed at epoch end, so a crash loses nothing already logged. When a later epoch brings a
    metric the header lacks, the file is rewritten (atomically) with the wider header; missing
    values are empty cells. The file of a stage is started afresh each time the stage runs —
    except when resuming: the checkpoint holds the number of rows logged and a digest of them
    (:meth:`state_dict`; not the rows, so a checkpoint does not grow with the epochs), and the
    resumed stage keeps that many rows of the file, so rows of epochs the resumed run repeats are
    not logged twice and none are lost. Resumed into another logdir, the rows come from the file
    of the run resumed. Rows that are not there as logged (the digest differs) are dropped, with
    a warning.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*",)
    kind: ClassVar[str | None] = "csv_logger"
    needs: ClassVar[tuple[str, ...]] = ("logdir",)

    def __init__(self, folder: str = "logs", **declarations: Any) -> None:
        declarations.setdefault("claims", (f"files:{folder}/",))
        super().__init__(**declarations)
        self.folder = folder
        self.path: Path | None = None
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []
        #: A digest of the rows logged so far, chained row by row (``""`` before the first).
        self.digest = ""
        self._handle: TextIO | None = None
        self._restored: int | None = None  # rows logged, as a checkpoint says

    def on_stage_start(self, runner: Any) -> None:
        if runner.logdir is None:
            raise ValueError("CSVLogger needs a logdir: pass logdir= to compile/Runner, "
                             "or drop the callback")
        self.path = Path(runner.logdir) / self.folder / f"{runner.stage_name}.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._close()
        count, self._restored = self._restored, None
        if count:
            self.rows = self._logged_rows(count, runner)
            self._rewrite()
            return
        self.columns, self.rows, self.digest = list(FIXED_COLUMNS), [], ""
        self._handle = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115

    def on_epoch_end(self, runner: Any) -> None:
        row: dict[str, Any] = {"stage": runner.stage_name, "epoch": runner.epoch,
                               "global_epoch": runner.global_epoch}
        row.update((key, _cell(value)) for key, value in runner.epoch_metrics.items())
        self.rows.append(row)
        self.digest = _chained(self.digest, row)
        new = sorted(key for key in row if key not in self.columns)
        if new or len(self.rows) == 1:
            self.columns.extend(new)
            self._rewrite()
        else:
            self._append(row)

    def on_stage_end(self, runner: Any) -> None:
        self._close()

    def on_exception(self, runner: Any) -> None:
        # The rows so far are already on disk (flushed per epoch); just release the file.
        self._close()

    def state_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "rows": len(self.rows), "digest": self.digest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """How many rows were logged; the next ``on_stage_start`` keeps that many of the file."""
        self.columns = [str(c) for c in state.get("columns", FIXED_COLUMNS)]
        self.digest = str(state.get("digest", ""))
        self._restored = int(state.get("rows", 0))

    def _logged_rows(self, count: int, runner: Any) -> list[dict[str, Any]]:
        """The first ``count`` rows of the stage's file, if they are the rows logged (the digest
        says so); from the file of the run resumed when it is in another logdir."""
        assert self.path is not None
        places = [self.path]
        resumed_from = getattr(runner, "resumed_from", None)
        if resumed_from is not None:
            from stagegraph.runtime.resume.store import logdir_of  # the resume package needs us

            source = logdir_of(Path(resumed_from))
            other = None if source is None else source / self.folder / self.path.name
            if other is not None and other.resolve() != self.path.resolve():
                places.append(other)
        for place in places:
            rows = _read_rows(place, count)
            if rows is not None and _digest(rows) == self.digest:
                return [{k: v for k, v in row.items() if k in self.columns} for row in rows]
        elsewhere = f" (nor does {places[1]})" if len(places) > 1 else ""
        warnings.warn(ResumeWarning(
            f"{self.path}: the checkpoint counts {count} row(s) of stage {runner.stage_name!r} "
            f"that this file does not hold as they were logged{elsewhere}; the log goes on "
            "without them"), stacklevel=2)
        self.digest = ""
        return []

    def _append(self, row: dict[str, Any]) -> None:
        assert self._handle is not None, "on_stage_start opens the file"
        csv.DictWriter(self._handle, self.columns, restval="").writerow(row)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def _rewrite(self) -> None:
        assert self.path is not None, "on_stage_start sets the path"
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        self._close()
        from stagegraph.runtime.callbacks.files import atomic_write  # torch; loaded when writing

        atomic_write(self.path, text.getvalue().encode("utf-8"))
        self._handle = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __repr__(self) -> str:
        return f"CSVLogger(folder={self.folder!r})"


def _read_rows(path: Path, count: int) -> list[dict[str, Any]] | None:
    """The first ``count`` rows of a CSV file; ``None`` if it has fewer or cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows: list[dict[str, Any]] = []
            for row in csv.DictReader(handle):
                if len(rows) == count:
                    break
                if None in row:  # more cells than the header has
                    return None
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return rows if len(rows) == count else None


def _text(value: Any) -> str:
    """A cell as the csv module writes it."""
    return "" if value is None else value if isinstance(value, str) else str(value)


def _chained(digest: str, row: dict[str, Any]) -> str:
    """The digest of the rows so far and ``row``; the same for a row read back from the file."""
    cells = sorted((str(key), text) for key, value in row.items() if (text := _text(value)))
    return hashlib.sha256((digest + json.dumps(cells)).encode("utf-8")).hexdigest()


def _digest(rows: list[dict[str, Any]]) -> str:
    digest = ""
    for row in rows:
        digest = _chained(digest, row)
    return digest


def _cell(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value
