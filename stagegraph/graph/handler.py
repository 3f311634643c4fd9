"""Batch handlers: the step between `on_batch_start` and `on_batch_end` (the forward pass)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any


class BatchHandler:
    """A callable ``(runner, batch) -> output`` with declared dataflow.

    ``reads`` are ``batch.*`` keys the handler takes from the loader's batch; ``writes`` are the
    ``output.*`` (or other) keys it produces. The compiler uses them to check that every key a
    callback reads has a source.
    """

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def __call__(self, runner: Any, batch: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def description(self) -> str:
        return type(self).__name__


class SupervisedHandler(BatchHandler):
    """``output[output_key] = model(batch[input_key])``; tuple batches are named by ``tuple_keys``.

    A dict batch is used as it is. A tuple or list batch (as a ``TensorDataset`` yields) becomes a
    dict whose keys are ``tuple_keys`` (by default ``(input_key, target_key)``), so callbacks read
    ``batch.targets`` whatever the loader yields.
    """

    def __init__(
        self,
        input_key: str = "features",
        target_key: str | None = "targets",
        output_key: str = "logits",
        tuple_keys: Sequence[str] | None = None,
    ) -> None:
        self.input_key = input_key
        self.target_key = target_key
        self.output_key = output_key
        default_keys = (input_key,) if target_key is None else (input_key, target_key)
        self.tuple_keys = tuple(tuple_keys) if tuple_keys is not None else default_keys
        batch_keys = {*self.tuple_keys, input_key, *(() if target_key is None else (target_key,))}
        self.reads = tuple(f"batch.{k}" for k in sorted(batch_keys))
        self.writes = (f"output.{output_key}",)

    def __call__(self, runner: Any, batch: Any) -> Any:
        if not isinstance(batch, Mapping):
            batch = dict(zip(self.tuple_keys, batch, strict=False))
            runner.input = batch
        return {self.output_key: runner.model(batch[self.input_key])}

    @property
    def description(self) -> str:
        return f"SupervisedHandler({self.input_key!r} -> {self.output_key!r})"


class FunctionHandler(BatchHandler):
    """Wraps a user function ``(runner, batch) -> output`` with its declared dataflow."""

    def __init__(
        self, fn: Callable[[Any, Any], Any], reads: Iterable[str] = (), writes: Iterable[str] = ()
    ) -> None:
        self.fn = fn
        self.reads = tuple(reads)
        self.writes = tuple(writes)
        self.declared = bool(self.writes)

    def __call__(self, runner: Any, batch: Any) -> Any:
        return self.fn(runner, batch)

    @property
    def description(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))


def handler(
    *, reads: Iterable[str] = (), writes: Iterable[str] = ()
) -> Callable[[Callable[[Any, Any], Any]], FunctionHandler]:
    """Decorator declaring a custom batch step's dataflow::

        @handler(reads=["batch.images"], writes=["output.fake", "metric.loss_g"])
        def gan_step(runner, batch): ...
    """

    def wrap(fn: Callable[[Any, Any], Any]) -> FunctionHandler:
        return FunctionHandler(fn, reads=reads, writes=writes)

    return wrap


def as_handler(value: Any) -> BatchHandler | None:
    """A `BatchHandler` for a handler or plain function; ``None`` for anything else."""
    if isinstance(value, BatchHandler):
        return value
    if callable(value):
        return FunctionHandler(value)
    return None
