"""`TensorBoardLogger`: epoch (and optionally batch) metrics as TensorBoard scalars."""

from __future__ import annotations

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
    ``torch.utils.tensorboard`` is imported when the logger is built; without the
    ``tensorboard`` package the constructor raises ``ImportError``.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*",)
    kind: ClassVar[str | None] = "tensorboard"
    needs: ClassVar[tuple[str, ...]] = ("logdir",)

    def __init__(self, folder: str = "tensorboard", log_batch_every: int = 0,
                 **declarations: Any) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(TENSORBOARD_HINT) from err
        if log_batch_every:
            declarations.setdefault("reads", ("epoch_metric.*", "metric.*"))
        declarations.setdefault("claims", (f"files:{folder}/",))
        super().__init__(**declarations)
        self._writer_cls = SummaryWriter
        self.folder = folder
        self.log_batch_every = log_batch_every
        self.writer: Any = None

    def on_stage_start(self, runner: Any) -> None:
        if runner.logdir is None:
            raise ValueError("TensorBoardLogger needs a logdir: pass logdir= to compile/Runner")
        path = Path(runner.logdir) / self.folder / str(runner.stage_name)
        self.writer = self._writer_cls(log_dir=str(path))

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
