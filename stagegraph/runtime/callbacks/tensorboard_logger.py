"""`TensorBoardLogger`: epoch (and optionally batch) metrics as TensorBoard scalars."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder

TENSORBOARD_HINT = ("TensorBoardLogger needs the 'tensorboard' package: "
                    "pip install 'stagegraph[tensorboard]' (or pip install tensorboard)")


class TensorBoardLogger(Callback):
    """Writes ``logdir/{folder}/{stage}/`` event files (master rank only).

    At each epoch end every epoch metric is written as ``epoch/{key}`` at step ``global_epoch``
    (global epochs run across stages, so curves continue from stage to stage). With
    ``log_batch_every=N > 0``, the batch metrics of every ``N``-th batch are written as
    ``batch/{loader}/{name}`` at step ``global_batch_step`` (each costs an ``.item()``).
    Without the ``tensorboard`` package the constructor raises ``ImportError`` (it looks the
    package up without importing it); ``torch.utils.tensorboard`` is imported when a stage starts.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*",)
    kind: ClassVar[str | None] = "tensorboard"
    needs: ClassVar[tuple[str, ...]] = ("logdir",)

    def __init__(self, folder: str = "tensorboard", log_batch_every: int = 0,
                 **declarations: Any) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(TENSORBOARD_HINT)
        if log_batch_every:
            declarations.setdefault("reads", ("epoch_metric.*", "metric.*"))
        declarations.setdefault("claims", (f"files:{folder}/",))
        super().__init__(**declarations)
        self.folder = folder
        self.log_batch_every = log_batch_every
        self.writer: Any = None

    def on_stage_start(self, runner: Any) -> None:
        if runner.logdir is None:
            raise ValueError("TensorBoardLogger needs a logdir: pass logdir= to compile/Runner")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(TENSORBOARD_HINT) from err
        path = Path(runner.logdir) / self.folder / str(runner.stage_name)
        self.writer = SummaryWriter(log_dir=str(path))

    def on_batch_end(self, runner: Any) -> None:
        every = self.log_batch_every
        if every and self.writer is not None and runner.global_batch_step % every == 0:
            step = runner.global_batch_step
            for key, value in runner.batch_metrics.items():
                self.writer.add_scalar(f"batch/{runner.loader_name}/{key}", float(value), step)

    def on_epoch_end(self, runner: Any) -> None:
        if self.writer is None:
            return
        for key, value in runner.epoch_metrics.items():
            self.writer.add_scalar(f"epoch/{key}", float(value), runner.global_epoch)
        self.writer.flush()

    def on_stage_end(self, runner: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_exception(self, runner: Any) -> None:
        self.on_stage_end(runner)  # close the writer and its thread; what was logged is flushed

    def __repr__(self) -> str:
        return f"TensorBoardLogger(folder={self.folder!r})"
