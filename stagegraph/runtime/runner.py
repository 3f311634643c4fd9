"""The runner: executes an `ExecutionPlan` — experiment → stage → epoch → loader → batch.

It interprets the plan and decides nothing the compiler already settled: callbacks come bound in
per-event tables (`binding.py`), components are built per stage (`components.py`), and the batch
loop does no lookups, sorting or filtering. See docs/runtime.md for the semantics.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from stagegraph.compiler.plan import ExecutionPlan
from stagegraph.graph.enums import LoaderKind
from stagegraph.graph.experiment import Experiment
from stagegraph.runtime import lock
from stagegraph.runtime.binding import Hook, StageBinding, bind
from stagegraph.runtime.callbacks.writer import CheckpointWriter, sync_requested
from stagegraph.runtime.compiled import CompiledStage
from stagegraph.runtime.components import ComponentBuilder
from stagegraph.runtime.determinism import deterministic
from stagegraph.runtime.device import batch_mover, batch_size, resolve_device
from stagegraph.runtime.distributed import Distributed
from stagegraph.runtime.elastic import Elastic
from stagegraph.runtime.errors import CheckpointWriteError, RunError, StagegraphWarning
from stagegraph.runtime.fastpath import Decision, Iterate
from stagegraph.runtime.faults import explain
from stagegraph.runtime.loop import describe, loader_batch_size, loader_len, place, set_train_mode
from stagegraph.runtime.optim_state import CarriedOptimizer
from stagegraph.runtime.resolve import runnable_plan
from stagegraph.runtime.resume.midepoch import MidEpoch, Stopped, StopRun
from stagegraph.runtime.seeding import set_global_seed
from stagegraph.runtime.stage_setup import build_stage, keep_optimizer, release_compiled
from stagegraph.runtime.state import RunnerState

#: How far a check run goes: batches per loader and epochs per stage.
CHECK_RUN_BATCHES = 2
CHECK_RUN_EPOCHS = 2

# How deep the run is, for error locations.
_EXPERIMENT, _STAGE, _EPOCH, _LOADER, _BATCH = range(5)


class Runner(RunnerState):
    """Runs a compiled plan; its attributes are the state callbacks read (see `RunnerState`).

    ``logdir`` and ``device`` override the plan's (the plan is compiled again for a new logdir,
    since defaults depend on it); ``check=True`` makes every stage a check run (2 batches per
    loader, at most 2 epochs); ``experiment`` is required for a plan read from JSON.
    ``resume=True`` continues from the latest complete checkpoint in the logdir (or from the
    checkpoint or logdir ``resume`` names), refusing a plan that changed since unless
    ``allow_plan_change=True``. A run not resumed refuses a logdir holding an unfinished run
    unless ``overwrite=True``, which sets the old run aside until this one's first checkpoint
    is saved. The master process holds the logdir's lock while it runs. ``checkpoint_every=N``
    also writes a resume checkpoint after every N-th batch of a ``train*`` loader; with a logdir,
    SIGTERM and SIGUSR1 stop the run at the next batch boundary after writing one (``stopped``
    says where). Checkpoints are written on a background thread while training goes on
    (``checkpoint_writer``; the run waits for it before the next checkpoint, at its end, on an
    exception or a stop); ``sync_checkpoints=True`` (or ``STAGEGRAPH_SYNC_CHECKPOINTS=1``)
    writes them on the training thread instead, to the same bytes. See docs/checkpoints.md.
    """

    def __init__(
        self,
        plan: ExecutionPlan,
        *,
        logdir: str | Path | None = None,
        device: str | torch.device | None = None,
        check: bool = False,
        experiment: Experiment | None = None,
        resume: bool | str | Path = False,
        allow_plan_change: bool = False,
        overwrite: bool = False,
        checkpoint_every: int | None = None,
        sync_checkpoints: bool = False,
    ) -> None:
        self._distributed = Distributed.from_environment()  # None: a single process
        plan = runnable_plan(plan, experiment=experiment, logdir=logdir, device=device)
        if self._distributed is not None:
            plan = self._distributed.plan_for(plan)
        logdir_path = Path(plan.logdir) if plan.logdir is not None else None
        run_device = (resolve_device(plan.device) if self._distributed is None
                      else self._distributed.device_for(plan.device))
        super().__init__(plan, run_device, logdir_path)
        self.check = check
        self._builder = ComponentBuilder(self.experiment, self.device)
        # Batch movers for loaders that pin their memory or not (non-blocking copies to CUDA).
        self._movers = (batch_mover(self.device), batch_mover(self.device, pinned=True))
        self._move = self._movers[0]
        self._bindings: tuple[StageBinding, ...] = ()
        self._binding: StageBinding | None = None
        self._loader_items: tuple[tuple[str, LoaderKind, Any, Iterate], ...] = ()
        #: Per loader of the current stage, whether it takes the batch fast path, and if not,
        #: why (see docs/runtime.md, "The batch fast path").
        self.fast_path: dict[str, Decision] = {}
        self._step: Any = None
        self._on_batch_start: tuple[Hook, ...] = ()
        self._on_batch_end: tuple[Hook, ...] = ()
        self._depth = _EXPERIMENT
        self._failed: tuple[str, str] | None = None  # (callback, event) an exception came from
        if self.logdir is not None and self.is_distributed_master:
            lock.probe(self.logdir)  # another run in this logdir: say so before anything else
        #: Writes the checkpoints, in the background unless ``sync_checkpoints``; ``wait()``
        #: for a callback that reads a checkpoint file during the run.
        self.checkpoint_writer = CheckpointWriter(
            background=not (sync_checkpoints or sync_requested()))
        # Under torchrun's restarts (--max-restarts), a restarted group resumes its run.
        self._elastic = Elastic(self._distributed, self.logdir)
        self._resume = self._elastic.open_session(self, self._builder, resume,
                                                  allow_plan_change=allow_plan_change,
                                                  overwrite=overwrite)
        #: Whether this attempt continues the run of a group torchrun restarted (rank 0 says
        #: where it resumed).
        self.restarted: bool = self._elastic.restarted
        #: The checkpoint resumed from (``None``: from the start), and where the run continues.
        self.resumed_from: Path | None = self._resume.resumed_from
        self.resume_position: str = self._resume.describe()
        self._mid = MidEpoch(self._resume, checkpoint_every,
                             distributed=self._distributed is not None)
        #: Set when a signal stopped the run (see `Stopped`); ``None`` otherwise.
        self.stopped: Stopped | None = None
        #: Called with the runner, once, when `run` ends however it ends (no callback fires on a
        #: signal's stop): trackers close what they opened here (docs/runtime.md). Must not raise.
        self.at_run_end: list[Callable[[Runner], None]] = []
        #: The optimizer state the latest stage with an optimizer left, kept while a later stage
        #: will start from it (``load_from_previous_stage``); ``None`` otherwise.
        self.kept_optimizer: CarriedOptimizer | None = None
        #: The stage's compiled model and criterion (``compile=``), ``None`` when not compiled;
        #: ``compilations`` keeps, per finished stage, how many times each was compiled.
        self.compiled: CompiledStage | None = None
        self.compilations: dict[str, dict[str, int | None]] = {}

    # --- the loop, one method per level -------------------------------------------------------
    def run(self) -> Runner:
        """Run every stage of the plan; returns the runner (see ``exception`` if not re-raised)."""
        self._bindings = bind(self.plan, self.experiment)
        with (deterministic(self.plan.deterministic), self._elastic.stop_group_on_error(),
              self._logdir_lock()):
            self._resume.prepare(self._bindings)
            self._elastic.mark()  # this job's run is in the logdir, for torchrun's restarts
            self.resumed_from = self._resume.resumed_from  # moved back from a set-aside run
            self.exception, self._failed, self.need_exception_reraise = None, None, True
            group = (contextlib.nullcontext() if self._distributed is None
                     else self._distributed.group())
            with group, self._mid.signals():  # one process group for the whole experiment
                try:
                    self.run_experiment()
                    self._resume.finish()  # once the last checkpoint is written
                except StopRun:  # a signal asked: the checkpoint is written, no callback fires
                    self._stop()
                except (Exception, KeyboardInterrupt) as err:
                    self._failed_writes()
                    self._handle_exception(err)
                finally:
                    release_compiled(self, report=False)  # after a failure: plain modules
                    self.checkpoint_writer.close()
                    while self.at_run_end:
                        self.at_run_end.pop(0)(self)
        return self

    def _stop(self) -> None:
        try:
            self._resume.wait()
        except CheckpointWriteError as err:  # then the checkpoint it names is not there
            self._handle_exception(err)
        self.stopped = self._mid.stopped

    def _failed_writes(self) -> None:
        """The run failed: wait for the writer first; a write that failed too is a warning."""
        error = self._resume.settle()
        if error is not None:
            warnings.warn(StagegraphWarning(f"besides the failure below: {error}"),
                          stacklevel=3)

    def _logdir_lock(self) -> contextlib.AbstractContextManager[Any]:
        """The logdir's lock, held by the master for the whole run (workers never write it)."""
        if self.logdir is None or not self.is_distributed_master:
            return contextlib.nullcontext()
        self.logdir.mkdir(parents=True, exist_ok=True)
        return lock.LogdirLock(self.logdir)

    def run_experiment(self) -> None:
        self.global_epoch = self.global_batch_step = self.global_sample_step = 0
        self._depth = _EXPERIMENT
        self._enter_stage(self._bindings[0])
        self._fire("on_experiment_start", self._table("on_experiment_start"))
        for binding in self._bindings[self._resume.first_stage:]:
            self.run_stage(binding)
        self._depth = _EXPERIMENT
        self._fire("on_experiment_end", self._table("on_experiment_end"))

    def run_stage(self, binding: StageBinding) -> None:
        self._enter_stage(binding)
        self._depth = _STAGE
        build_stage(self)
        self._resume.enter_stage(self)
        self._fire("on_stage_start", self._table("on_stage_start"))
        for _ in range(self._resume.stage_started(self)):
            self.run_epoch()
            if self._distributed is not None:  # every rank stops if any rank asks to
                self.need_early_stop = self._distributed.any(self.need_early_stop)
            self._resume.epoch_end(self)  # the resume checkpoint: after every epoch-end callback
            self._mid.after_epoch(self)
            if self.need_early_stop:
                self.need_early_stop = False
                break
        self._depth = _STAGE
        self._fire("on_stage_end", self._table("on_stage_end"))
        release_compiled(self, report=True)
        keep_optimizer(self, binding)

    def run_epoch(self) -> None:
        self.epoch += 1
        self.global_epoch += 1
        set_global_seed(self.plan.seed + self.global_epoch + 1)
        self.epoch_metrics = {}
        self._depth = _EPOCH
        self._fire("on_epoch_start", self._table("on_epoch_start"))
        first = self._mid.epoch_started(self)  # resumed mid-epoch: the loader it was in
        for index, (name, kind, loader, iterate) in enumerate(self._loader_items[first:], first):
            self.run_loader(index, name, kind, loader, iterate)
        self._depth = _EPOCH
        self._resume.wait()  # the last checkpoint is written before this epoch's: raises if not
        self._fire("on_epoch_end", self._table("on_epoch_end"))

    def run_loader(self, index: int, name: str, kind: LoaderKind, loader: Any,
                   iterate: Iterate = iter) -> None:
        self._enter_loader(name, kind, loader)
        self._fire("on_loader_start", self._table("on_loader_start"))
        batches = self._mid.batches(self, index, loader,
                                    CHECK_RUN_BATCHES if self.is_check_run else None, iterate)
        with torch.set_grad_enabled(self.is_train_loader):
            self._run_batches(batches)
        if self.loader_batch_step == 0 and self.is_train_loader:
            warnings.warn(StagegraphWarning(
                f"stage {self.stage_name!r}, epoch {self.epoch}: the train loader {name!r} "
                "yielded no batch, so nothing was trained in this epoch (an empty dataset, or "
                "drop_last=True with fewer samples than batch_size?)"), stacklevel=2)
        self._depth = _LOADER
        self._fire("on_loader_end", self._table("on_loader_end"))

    def _run_batches(self, batches: Iterable[Any]) -> None:
        for batch in batches:
            self.global_batch_step += 1
            self.loader_batch_step += 1
            self.run_batch(batch)
            if self.need_early_stop:
                self.need_early_stop = False
                break
            if self._mid.due(self):  # every N train batches, or a signal: a checkpoint here
                self._mid.boundary(self)

    def run_batch(self, batch: Any) -> None:
        self._depth = _BATCH
        self.batch_size = size = batch_size(batch)
        self.global_sample_step += size
        self.loader_sample_step += size
        self.input = batch = self._move(batch)
        self.batch_metrics = {}
        self._fire("on_batch_start", self._on_batch_start)
        self.output = self._step(self, batch)
        self._fire("on_batch_end", self._on_batch_end)
        self._depth = _LOADER

    def _fire(self, event: str, hooks: tuple[Hook, ...]) -> None:
        """Call ``hooks`` in plan order; remember which one raised, for the error message."""
        for hook in hooks:
            try:
                hook(self)
            except BaseException:
                if self._failed is None and self._binding is not None:
                    self._failed = (self._binding.name_of(hook), event)
                raise

    # --- entering a level ---------------------------------------------------------------------
    def _table(self, event: str) -> tuple[Hook, ...]:
        return self._binding.table(event) if self._binding is not None else ()

    def _enter_stage(self, binding: StageBinding) -> None:
        """The stage's plan values and callbacks, and fresh per-stage state."""
        stage = binding.plan
        self._binding = binding
        self.stage, self.stage_name, self.callbacks = stage, stage.name, binding.callbacks
        self.is_infer_stage, self.precision = stage.is_infer, stage.precision
        self.is_check_run = stage.check_run or self.check
        self.num_epochs = (min(stage.num_epochs, CHECK_RUN_EPOCHS) if self.is_check_run
                           else stage.num_epochs)
        self.main_metric, self.minimize_metric = stage.main_metric, stage.minimize_metric
        self.valid_loader = stage.valid_loader
        self.valid_metrics, self.best_valid_metrics, self.is_best_valid = {}, {}, False
        self.epoch, self.need_early_stop = 0, False
        self.reset_loader_state()
        self._on_batch_start = binding.table("on_batch_start")
        self._on_batch_end = binding.table("on_batch_end")

    def _enter_loader(self, name: str, kind: LoaderKind, loader: Any) -> None:
        self.loader_name = name
        self.is_train_loader = kind is LoaderKind.train
        self.is_valid_loader = kind is LoaderKind.valid
        self.is_infer_loader = kind is LoaderKind.infer
        self.loader_len = loader_len(loader, CHECK_RUN_BATCHES if self.is_check_run else None)
        self.loader_batch_size = loader_batch_size(loader)
        self._move = self._movers[getattr(loader, "pin_memory", False) is True]
        self.loader_batch_step = self.loader_sample_step = 0
        set_train_mode(self.model, self.is_train_loader)
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, DistributedSampler) and not self.is_infer_stage:
            sampler.set_epoch(self.epoch)
        set_global_seed(self.plan.seed + self.global_epoch + 1)
        self.loader_metrics = {}
        self._depth = _LOADER

    # --- exceptions ---------------------------------------------------------------------------
    def _handle_exception(self, err: BaseException) -> None:
        """``on_exception`` in plan order, then re-raise with where it happened (or not)."""
        self.exception = err
        where = self._where()
        for hook in self._table("on_exception"):
            try:
                hook(self)
            except Exception as handler_err:
                name = self._binding.name_of(hook) if self._binding else "?"
                raise RunError(f"callback {name!r} failed in on_exception while handling "
                               f"{describe(err)} ({place(where)})", where) from handler_err
        if not self.need_exception_reraise:
            return
        if isinstance(err, KeyboardInterrupt):
            raise err
        described = explain(err, self, where) or describe(err)
        raise RunError(f"run failed at {place(where)}: {described}", where) from err

    def _where(self) -> dict[str, object]:
        where: dict[str, object] = {}
        if self._depth >= _STAGE:
            where["stage"] = self.stage_name
        if self._depth >= _EPOCH:
            where["epoch"] = self.epoch
        if self._depth >= _LOADER:
            where["loader"] = self.loader_name
        if self._depth >= _BATCH:
            where["batch"] = self.loader_batch_step
        if self._failed is not None:
            where["callback"], where["event"] = self._failed
        return where

    def __repr__(self) -> str:
        return (f"Runner(experiment={self.plan.experiment!r}, device={str(self.device)!r}, "
                f"stage={self.stage_name!r}, epoch={self.epoch}, "
                f"global_epoch={self.global_epoch})")

