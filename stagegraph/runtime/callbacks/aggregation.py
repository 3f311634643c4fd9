"""`MetricAggregationCallback`: batch metrics -> loader means (weighted by batch size) -> epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder

if TYPE_CHECKING:
    import torch


class MetricAggregationCallback(Callback):
    """Averages every batch metric over the loader, weighted by batch size.

    Per batch it keeps each tensor value (detached) and the batch size, and reads nothing back
    from the device: no host synchronisation per batch, on CPU or an accelerator. The values are
    read in one go (one ``.tolist()`` per metric) when the loader ends, when the console refreshes
    its bar (`running`) and when a mid-epoch checkpoint saves the sums, and added up in batch
    order as ``value * batch_size`` in Python floats, so the means are those of adding the values
    one by one. At loader end
    ``loader_metrics[name]`` = sum / count, unless a callback already set ``loader_metrics[name]``
    for the loader (a metric computed over the whole loader, such as an AUC, wins over the mean of
    batch values). Then every loader metric is copied into ``epoch_metrics`` as
    ``f"{loader_name}_{name}"``. In a distributed run (``torch.distributed`` initialised) the sums
    are all-reduced first (the sums of ``value * batch_size`` and of sample counts), so every rank
    sees the same mean over all the samples of all ranks.
    """

    order: ClassVar[int] = CallbackOrder.MetricAggregation
    reads: ClassVar[tuple[str, ...]] = ("metric.*",)
    writes: ClassVar[tuple[str, ...]] = ("loader_metric.*", "epoch_metric.*")
    kind: ClassVar[str | None] = "metric_aggregation"
    claims: ClassVar[tuple[str, ...]] = ("metric_aggregation",)

    def __init__(self, **declarations: Any) -> None:
        super().__init__(**declarations)
        self._sums: dict[str, list[Any]] = {}  # name -> [sum of value * batch_size, sample count]
        self._pending: dict[str, _Pending] = {}  # name -> tensor values not read back yet

    def on_loader_start(self, runner: Any) -> None:
        self._sums, self._pending = {}, {}

    def on_batch_end(self, runner: Any) -> None:
        import torch  # here, not at module level: building the callback needs no torch

        bs = runner.batch_size
        for key, value in runner.batch_metrics.items():
            if isinstance(value, torch.Tensor):
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = _Pending()
                pending.add(key, value, bs)
                continue
            if key in self._pending:  # a number after tensors: keep the batch order
                self._drain(key)
            acc = self._sums.get(key)
            if acc is None:
                self._sums[key] = [value * bs, bs]
            else:
                acc[0] += value * bs
                acc[1] += bs

    def on_loader_end(self, runner: Any) -> None:
        import torch.distributed as dist

        self._drain_all()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            _all_reduce(self._sums, runner.device)
        loader_metrics = runner.loader_metrics
        for key, (total, count) in self._sums.items():
            if key not in loader_metrics:
                loader_metrics[key] = _mean(key, total, count)
        epoch_metrics = runner.epoch_metrics
        prefix = f"{runner.loader_name}_"
        for key, value in loader_metrics.items():
            epoch_metrics[prefix + key] = value

    def loader_state_dict(self) -> dict[str, Any]:
        self._drain_all()  # a checkpoint copies state to the host anyway
        return {"sums": {key: list(acc) for key, acc in self._sums.items()}}

    def load_loader_state_dict(self, state: dict[str, Any]) -> None:
        self._sums = {key: list(acc) for key, acc in state["sums"].items()}
        self._pending = {}

    def running(self, key: str) -> float | None:
        """The mean of ``key`` over the batches of the current loader so far, or ``None``.

        Reads the values logged since the last call back from the device: a host
        synchronisation, which is why the console calls it only when it redraws its bar.
        """
        if key in self._pending:
            self._drain(key)
        acc = self._sums.get(key)
        return None if acc is None or not acc[1] else _mean(key, acc[0], acc[1])

    def _drain_all(self) -> None:
        for key in list(self._pending):
            self._drain(key)

    def _drain(self, key: str) -> None:
        """Add the pending values of ``key`` to its sum, one by one in batch order."""
        pending = self._pending.pop(key)
        acc = self._sums.get(key)
        total, count = (acc[0], acc[1]) if acc is not None else (None, 0)
        for value, bs in zip(pending.values(), pending.sizes, strict=True):
            total = value * bs if total is None else total + value * bs
            count += bs
        if total is not None:
            self._sums[key] = [total, count]

    def __repr__(self) -> str:
        return "MetricAggregationCallback()"


class _Pending:
    """The tensor values of one metric not read back yet, and their batch sizes.

    Every ``CHUNK`` values are stacked into one tensor on the device (no synchronisation), so a
    long loader holds a few tensors rather than one per batch.
    """

    CHUNK = 512

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []
        self.last: list[torch.Tensor] = []
        self.sizes: list[int] = []

    def add(self, key: str, value: torch.Tensor, bs: int) -> None:
        if value.numel() != 1:
            raise ValueError(f"batch metric {key!r} has shape {tuple(value.shape)}; "
                             "batch metrics must be numbers or one-element tensors")
        value = value.detach()
        self.last.append(value.reshape(()) if value.ndim else value)
        self.sizes.append(bs)
        if len(self.last) >= self.CHUNK:
            import torch

            self.chunks.append(torch.stack(self.last))
            self.last = []

    def values(self) -> list[Any]:
        """The values as Python numbers, in batch order: one read from the device."""
        import torch

        parts = [*self.chunks, torch.stack(self.last)] if self.last else self.chunks
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).tolist()


def _mean(key: str, total: Any, count: int) -> float:
    try:
        return float(total) / count
    except (TypeError, ValueError) as err:
        raise TypeError(f"batch metric {key!r} is not a number ({type(total).__name__})") from err


def _all_reduce(sums: dict[str, list[Any]], device: Any) -> None:
    """Sum ``sums`` over all ranks in place: every rank ends with the same keys and totals.

    A metric some rank did not log (a callback that runs on the master only) counts zero there,
    so its mean is over the ranks that logged it.
    """
    import torch
    import torch.distributed as dist

    keys = _all_keys(sums)
    flat = torch.tensor([float(sums[k][i]) if k in sums else 0.0 for k in keys for i in (0, 1)],
                        dtype=torch.float64, device=device if device is not None else "cpu")
    dist.all_reduce(flat)
    values = flat.tolist()
    for j, key in enumerate(keys):
        sums[key] = [values[2 * j], values[2 * j + 1]]


def _all_keys(sums: dict[str, list[Any]]) -> list[str]:
    """The metric names logged on any rank, in the same order on every rank."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(sums))
    return sorted({key for keys in gathered for key in keys})
