"""`TensorBoardLogger`: the experiment as one TensorBoard run — epoch metrics grouped as
``{metric}/{loader}``, the learning rate of every param group, and the hyperparameters."""

from __future__ import annotations

import importlib.util
import time
import weakref
from pathlib import Path
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackNode, CallbackOrder
from stagegraph.runtime.callbacks.run_params import (
    as_float,
    epoch_scalars,
    experiment_params,
    learning_rates,
    stage_loaders,
)

TENSORBOARD_HINT = ("TensorBoardLogger needs the 'tensorboard' package: "
                    "pip install 'stagegraph[tensorboard]' (or pip install tensorboard)")
#: The folder of the per-batch run, inside the logger's folder.
BATCH_RUN = "batches"

# The runners whose hyperparameters were written in this process: each stage has its own
# logger, and the first one to start writes them.
_HPARAMS_WRITTEN: weakref.WeakSet[Any] = weakref.WeakSet()
# The writers open per runner, by folder: the stages' loggers share one event file. Two files
# opened in the same second are ordered by a per-process counter compared as text (".10" sorts
# before ".9"), so a file per stage could be read out of order and its restart marker would then
# hide the points of the stages before it.
# Keyed by id(runner) (a runner need not be hashable); the entry goes when the runner does.
_WRITERS: dict[int, dict[str, Any]] = {}


def shared_writer(runner: Any, folder: Path, purge_step: int) -> Any:
    """The runner's open `SummaryWriter` for ``folder``, made (with a restart marker at
    ``purge_step``) by the first stage that asks; closed at experiment end, on an exception, or
    when the runner is collected."""
    from torch.utils.tensorboard import SummaryWriter

    writers = _WRITERS.get(id(runner))
    if writers is None:
        writers = _WRITERS[id(runner)] = {}
        weakref.finalize(runner, _forget, id(runner))
    key = str(folder)
    if key not in writers:
        _after_events_of_this_second(folder)
        writers[key] = SummaryWriter(log_dir=key, purge_step=purge_step)
    return writers[key]


def _after_events_of_this_second(folder: Path) -> None:
    """Waits, if ``folder`` holds an event file named with this second (or a later one), until
    the clock has passed it: the new file then sorts after it, whatever the counters say (a run
    resumed in the same process, a test)."""
    latest = max((_second_of(path.name) for path in folder.glob("events.out.tfevents.*")),
                 default=-1)
    while int(time.time()) <= latest:
        time.sleep(latest + 1 - time.time() + 0.001)


def _second_of(name: str) -> int:
    """The time field of an event file's name, ``events.out.tfevents.{second}.{host}...``."""
    field = name.split(".")[3] if name.count(".") >= 3 else ""
    return int(field) if field.isdigit() else -1


def close_writers(runner: Any) -> None:
    """Close the runner's writers (their threads end; what was logged is on disk)."""
    _forget(id(runner))


def _forget(key: int) -> None:
    for writer in _WRITERS.pop(key, {}).values():
        writer.close()


class TensorBoardLogger(Callback):
    """Writes the event files of one TensorBoard run, ``logdir/{folder}/`` (master rank only).

    At each epoch end every epoch metric is written at step ``global_epoch`` (global epochs run
    across stages, so curves continue from stage to stage) under the tag ``{metric}/{loader}``:
    ``loss/train`` and ``loss/valid`` share the chart ``loss``; a metric of no loader keeps its
    name (``lr``). The learning rate of every param group of the stage's optimizer is written as
    ``lr/group{i}``. When the first stage starts, the experiment's parameters (seed, each stage's
    plan parameters, components and callbacks with their arguments: `experiment_params`) go to
    TensorBoard's HParams dashboard, with the valid metrics of every stage as its metrics.

    The stages of one run write one event file, which starts with a restart marker at step
    ``global_epoch + 1``: a resumed run drops the points its checkpoint does not cover, so no
    point is there twice or out of order. With ``log_batch_every=N > 0``, the batch metrics
    of every ``N``-th batch are written as ``batch/{metric}/{loader}`` at step
    ``global_batch_step`` to a second run, ``{folder}/batches/`` (steps of another axis).
    Without the ``tensorboard`` package the constructor raises ``ImportError`` (it looks the
    package up without importing it); ``torch.utils.tensorboard`` is imported when a stage starts.
    """

    order: ClassVar[int] = CallbackOrder.Logging
    node: ClassVar[CallbackNode] = CallbackNode.master
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*",)
    kind: ClassVar[str | None] = "tensorboard"
    needs: ClassVar[tuple[str, ...]] = ("logdir",)

    def __init__(self, folder: str = "tensorboard", log_batch_every: int = 0,
                 log_hparams: bool = True, **declarations: Any) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(TENSORBOARD_HINT)
        if log_batch_every:
            declarations.setdefault("reads", ("epoch_metric.*", "metric.*"))
        declarations.setdefault("claims", (f"files:{folder}/",))
        super().__init__(**declarations)
        self.folder = folder
        self.log_batch_every = log_batch_every
        self.log_hparams = log_hparams
        self.writer: Any = None
        self.batch_writer: Any = None
        self._loaders: tuple[str, ...] = ()
        self._rates: dict[str, float] = {}

    def on_stage_start(self, runner: Any) -> None:
        if runner.logdir is None:
            raise ValueError("TensorBoardLogger needs a logdir: pass logdir= to compile/Runner")
        try:
            importlib.import_module("torch.utils.tensorboard")
        except ImportError as err:
            raise ImportError(TENSORBOARD_HINT) from err
        path = Path(runner.logdir) / self.folder
        # Events at or after the purge step, from a run this one resumes, are dropped.
        self.writer = shared_writer(runner, path, int(runner.global_epoch) + 1)
        if self.log_batch_every:
            self.batch_writer = shared_writer(runner, path / BATCH_RUN,
                                              int(runner.global_batch_step) + 1)
        self._loaders, self._rates = stage_loaders(runner), {}
        if self.log_hparams and runner.plan is not None and runner not in _HPARAMS_WRITTEN:
            _HPARAMS_WRITTEN.add(runner)
            self._write_hparams(runner)

    def _write_hparams(self, runner: Any) -> None:
        from torch.utils.tensorboard.summary import hparams

        plan = runner.plan
        params = experiment_params(plan, getattr(runner, "experiment", None))
        metrics = {f"{name}/{stage.valid_loader}": 0.0 for stage in plan.stages
                   if not stage.is_infer for name in stage.metrics.valid}
        experiment, start, _ = hparams(params, metrics)
        self.writer.file_writer.add_summary(experiment)
        self.writer.file_writer.add_summary(start)

    def on_batch_end(self, runner: Any) -> None:
        every = self.log_batch_every
        if every and self.batch_writer is not None and runner.global_batch_step % every == 0:
            step, loader = runner.global_batch_step, runner.loader_name
            for key, value in runner.batch_metrics.items():
                self.batch_writer.add_scalar(f"batch/{key}/{loader}", as_float(value), step)

    def on_loader_end(self, runner: Any) -> None:
        # The rates the epoch trained with: the scheduler steps at epoch end, before loggers.
        self._rates = learning_rates(runner.optimizer)

    def on_epoch_end(self, runner: Any) -> None:
        if self.writer is None:
            return
        step = runner.global_epoch
        for tag, value in epoch_scalars(runner.epoch_metrics, self._loaders, self._rates).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def on_stage_end(self, runner: Any) -> None:
        for writer in (self.writer, self.batch_writer):
            if writer is not None:
                writer.flush()
        self.writer = self.batch_writer = None

    def on_experiment_end(self, runner: Any) -> None:
        close_writers(runner)

    def on_exception(self, runner: Any) -> None:
        self.on_stage_end(runner)
        self.on_experiment_end(runner)  # close the writers and their threads

    def __repr__(self) -> str:
        return f"TensorBoardLogger(folder={self.folder!r})"
