"""Mid-epoch checkpoints and graceful stops: a resume checkpoint at a batch boundary, and an epoch
continued from one bit-exactly.

`MidEpoch` gives the runner its batch-level hooks. A checkpoint is written after every N-th batch
of a ``train*`` loader (``Runner(..., checkpoint_every=N)``) and, on SIGTERM or SIGUSR1, at the
next batch boundary of any loader, after which the run stops (`StopRun`, see `Stopped`).

What a batch boundary adds to an epoch-end checkpoint (the ``position``): which loader of the
epoch and how many of its batches are done, the loader's counters and metrics, every callback's
``loader_state_dict()`` (running sums, pending accumulation steps, buffered predictions), the
gradients of the model's parameters, and the random generators twice — as they were just before
the loader's iterator was made (the sampler draws its permutation from them) and as they are now.

Resuming re-enters the epoch and the loader (``on_epoch_start`` and ``on_loader_start`` fire, as
``on_stage_start`` does for a resumed stage), skips the loaders already done, puts the position
back after ``on_loader_start``, and iterates a copy of the loader whose batch sampler skips the
batches done: their indices are drawn, their data is never loaded. Only a `torch DataLoader`
(not a subclass) over a map-style dataset with a batch sampler can be skipped into;
see `unskippable`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Sampler

from stagegraph.runtime import rng
from stagegraph.runtime.callbacks.files import plain, unwrap
from stagegraph.runtime.errors import StagegraphWarning
from stagegraph.runtime.sharding import loader_options

#: The exit code of ``stagegraph run`` stopped by SIGTERM or SIGUSR1 (sysexits' EX_TEMPFAIL).
EXIT_STOPPED = 75
#: The signals that stop a run at the next batch boundary (SIGUSR1: SLURM's requeue warning).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1")
                     if hasattr(signal, name))


class StopRun(BaseException):
    """Unwinds the loop after a requested stop. Not an error: ``on_exception`` does not fire."""


@dataclass(frozen=True)
class Stopped:
    """How a run stopped on a signal: where, and the checkpoint it continues from."""

    signal: str
    where: str
    checkpoint: Path | None
    reason: str = ""

    def message(self) -> str:
        if self.checkpoint is not None:
            return (f"stopped by {self.signal} at {self.where}: resume checkpoint written to "
                    f"{self.checkpoint}; continue with --resume")
        return (f"stopped by {self.signal} at {self.where} without a checkpoint there "
                f"({self.reason}); --resume continues from the last complete checkpoint")


def unskippable(loader: Any) -> str | None:
    """Why an epoch cannot continue mid-way through ``loader``, or ``None`` if it can."""
    if not isinstance(loader, DataLoader):
        return f"it is a {type(loader).__name__}, not a torch DataLoader"
    if type(loader) is not DataLoader:
        return f"it is a DataLoader subclass ({type(loader).__name__})"
    if isinstance(loader.dataset, IterableDataset):
        return "its dataset is an IterableDataset, whose position is its own"
    if loader.batch_sampler is None:
        return "it has batch_size=None, so no batch sampler to skip batches in"
    return None


class SkipBatches(Sampler[list[int]]):
    """A batch sampler that draws ``skip`` batches of ``batches`` without yielding them.

    The skip happens in `advance`: called by the runner right after the loader's iterator is made,
    so the random draws happen in the order they first did (the iterator's base seed, then the
    sampler's permutation); without the call, at the first batch.
    """

    def __init__(self, batches: Any, skip: int) -> None:
        self.batches, self.skip = batches, skip
        self._iterator: Iterator[list[int]] | None = None

    def advance(self) -> None:
        if self._iterator is None:
            self._iterator = iter(self.batches)
            for _ in islice(self._iterator, self.skip):
                pass

    def __iter__(self) -> Iterator[list[int]]:
        return self._rest()

    def _rest(self) -> Iterator[list[int]]:
        self.advance()
        assert self._iterator is not None
        iterator, self._iterator = self._iterator, None
        yield from iterator

    def __len__(self) -> int:
        return max(len(self.batches) - self.skip, 0)


def skipping_loader(loader: DataLoader[Any], skip: int) -> DataLoader[Any]:
    """``loader`` without its first ``skip`` batches: same dataset, sampler and options."""
    options = {k: v for k, v in loader_options(loader).items() if k != "drop_last"}
    return DataLoader(loader.dataset, batch_sampler=SkipBatches(loader.batch_sampler, skip),
                      **options)


class MidEpoch:
    """The runner's batch-level resume hooks (see the module docstring)."""

    def __init__(self, session: Any, every: int | None, *, distributed: bool) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            raise ValueError(f"checkpoint_every must be a number of batches >= 1, not {every!r}")
        if every is not None and distributed:
            warnings.warn(StagegraphWarning(
                "checkpoint_every is ignored in a distributed run: it checkpoints at epoch ends "
                "only (mid-epoch checkpoints are for single-process runs)"), stacklevel=3)
        self.session = session
        self.enabled = session.store is not None and not distributed  # this process writes them
        self.every = every if self.enabled else None
        self.requested: int | None = None  # the signal received, until the run stops on it
        self.stopped: Stopped | None = None
        self._resume_at: dict[str, Any] | None = session.position
        self._start: dict[str, Any] | None = None  # generators before this loader's iterator
        self._problem: str | None = None  # why this loader cannot be continued mid-way
        self._index = 0
        self._warned: set[tuple[str, str]] = set()

    # --- signals ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGUSR1 only set a flag while the run is inside this block."""
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self._received) for number in STOP_SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _received(self, number: int, frame: Any) -> None:
        self.requested = number

    # --- runner hooks -------------------------------------------------------------------------
    def epoch_started(self, runner: Any) -> int:
        """After ``on_epoch_start``: the index of the first loader to run (resumed: the saved
        one, with the metrics of the loaders before it)."""
        if self._resume_at is None:
            return 0
        runner.epoch_metrics = dict(self._resume_at["epoch_metrics"])
        return int(self._resume_at["loader_index"])

    def batches(self, runner: Any, index: int, loader: Any, limit: int | None,
                iterate: Callable[[Any], Iterator[Any]] = iter) -> Iterator[Any]:
        """After ``on_loader_start``: the loader's batches (resumed: those not done yet), each
        loader iterated by ``iterate`` (`iter`, or the batch fast path's)."""
        self._index = index
        position, self._resume_at = self._resume_at, None
        if position is None:
            self._problem = unskippable(loader) if self.enabled else "no checkpoints are written"
            self._start = (None if self._problem is not None else
                           {"rng": rng.capture(), "loaders": rng.capture_loaders({"": loader})})
            batches: Iterator[Any] = iterate(loader)
            done = 0
        else:
            done = _restore_loader_state(runner, position)
            resumed = skipping_loader(loader, done)
            _put_generators(loader, position["start"])
            batches = iterate(resumed)
            resumed.batch_sampler.advance()  # type: ignore[union-attr]
            _put_generators(loader, position["now"])
            self._start, self._problem = position["start"], None
        return batches if limit is None else islice(batches, max(limit - done, 0))

    def due(self, runner: Any) -> bool:
        """Whether the batch just done ends at a checkpoint (or a stop)."""
        return self.requested is not None or (
            self.every is not None and runner.is_train_loader
            and runner.loader_batch_step % self.every == 0)

    def boundary(self, runner: Any) -> None:
        """Write the mid-epoch checkpoint if this loader allows one; stop if a signal asked."""
        path = None
        if self._problem is None and self._start is not None:
            path = self.session.write_position(runner, self._position(runner))
        elif self.requested is None:
            self._warn_once(runner)
        if self.requested is not None:
            where = (f"stage {runner.stage_name!r}, epoch {runner.epoch}, loader "
                     f"{runner.loader_name!r}, batch {runner.loader_batch_step}")
            self._stop(where, path, f"loader {runner.loader_name!r}: {self._problem}")

    def after_epoch(self, runner: Any) -> None:
        """After the epoch-end checkpoint: stop there if a signal asked."""
        if self.requested is not None:
            where = f"stage {runner.stage_name!r}, end of epoch {runner.epoch}"
            self._stop(where, self.session.last_written, "no logdir")

    # --- helpers ------------------------------------------------------------------------------
    def _stop(self, where: str, path: Path | None, reason: str) -> None:
        name = signal.Signals(self.requested).name if self.requested is not None else "signal"
        self.stopped = Stopped(name, where, path, "" if path is not None else reason)
        raise StopRun

    def _position(self, runner: Any) -> dict[str, Any]:
        loader = runner.loaders[runner.loader_name]
        return plain({
            "loader": runner.loader_name, "loader_index": self._index,
            "loader_batch_step": runner.loader_batch_step,
            "loader_sample_step": runner.loader_sample_step,
            "loader_metrics": dict(runner.loader_metrics),
            "epoch_metrics": dict(runner.epoch_metrics),
            "callbacks": {name: cb.loader_state_dict()
                          for name, cb in (runner.callbacks or {}).items()},
            "grads": _grads(runner.model),
            "start": self._start,
            "now": {"rng": rng.capture(), "loaders": rng.capture_loaders({"": loader})},
        }, "mid-epoch resume checkpoint")

    def _warn_once(self, runner: Any) -> None:
        key = (str(runner.stage_name), str(runner.loader_name))
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(StagegraphWarning(
            f"stage {key[0]!r} > loader {key[1]!r}: no mid-epoch checkpoint is written in this "
            f"loader ({self._problem}); the run checkpoints at the epoch's end. Give it a "
            "torch DataLoader over a map-style dataset to checkpoint inside it"), stacklevel=2)


def _put_generators(loader: Any, saved: Mapping[str, Any]) -> None:
    rng.restore(saved["rng"])
    rng.restore_loaders({"": loader}, saved["loaders"])


def _restore_loader_state(runner: Any, position: Mapping[str, Any]) -> int:
    """Counters, metrics, callbacks' loader state and gradients; returns the batches done."""
    runner.loader_batch_step = int(position["loader_batch_step"])
    runner.loader_sample_step = int(position["loader_sample_step"])
    runner.loader_metrics = dict(position["loader_metrics"])
    saved = position["callbacks"]
    for name, callback in (runner.callbacks or {}).items():
        if saved.get(name):
            callback.load_loader_state_dict(saved[name])
    parameters = _parameters(runner.model)
    for name, grad in position["grads"].items():
        if name in parameters:
            parameters[name].grad = grad.to(parameters[name].device)
    return runner.loader_batch_step


def _parameters(model: Any) -> dict[str, torch.nn.Parameter]:
    model = unwrap(model)
    if isinstance(model, nn.Module):
        return dict(model.named_parameters())
    if isinstance(model, Mapping):
        return {f"{key}.{name}": p for key, module in model.items()
                if isinstance(module, nn.Module) for name, p in unwrap(module).named_parameters()}
    return {}


def _grads(model: Any) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in _parameters(model).items()
            if p.grad is not None}
