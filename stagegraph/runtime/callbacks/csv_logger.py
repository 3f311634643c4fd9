"""`CSVLogger`: one row of epoch metrics per epoch in ``logdir/logs/{stage}.csv``."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, ClassVar, TextIO

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder
from stagegraph.runtime.callbacks.files import atomic_write

FIXED_COLUMNS = ("stage", "epoch", "global_epoch")


class CSVLogger(Callback):
    """Writes ``logdir/logs/{stage}.csv`` (master rank only).

    Columns: ``stage``, ``epoch``, ``global_epoch``, then every key of ``runner.epoch_metrics``
    in sorted order (``train_loss``, ``valid_accuracy``, ``lr``...). Each row is flushed and
    fsync-ed at epoch end, so a crash loses nothing already logged. When a later epoch brings a
    metric the header lacks, the file is rewritten (atomically) with the wider header; missing
    values are empty cells. The file of a stage is started afresh each time the stage runs —
    except when resuming: the rows are part of the checkpoint (:meth:`state_dict`), and the
    resumed stage rewrites the file with them, so rows of epochs the resumed run repeats are not
    logged twice and none are lost.
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
        self._handle: TextIO | None = None
        self._restored = False

    def on_stage_start(self, runner: Any) -> None:
        if runner.logdir is None:
            raise ValueError("CSVLogger needs a logdir: pass logdir= to compile/Runner, "
                             "or drop the callback")
        self.path = Path(runner.logdir) / self.folder / f"{runner.stage_name}.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._close()
        if self._restored and self.rows:
            self._restored = False
            self._rewrite()
            return
        self.columns, self.rows, self._restored = list(FIXED_COLUMNS), [], False
        self._handle = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115

    def on_epoch_end(self, runner: Any) -> None:
        row: dict[str, Any] = {"stage": runner.stage_name, "epoch": runner.epoch,
                               "global_epoch": runner.global_epoch}
        row.update((key, _cell(value)) for key, value in runner.epoch_metrics.items())
        self.rows.append(row)
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
        return {"columns": list(self.columns), "rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rows logged so far; the next ``on_stage_start`` writes them back."""
        self.columns = [str(c) for c in state.get("columns", FIXED_COLUMNS)]
        self.rows = [dict(row) for row in state.get("rows", [])]
        self._restored = True

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
        atomic_write(self.path, text.getvalue().encode("utf-8"))
        self._handle = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __repr__(self) -> str:
        return f"CSVLogger(folder={self.folder!r})"


def _cell(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value
