"""`MetricAggregationCallback`: batch metrics -> loader means (weighted by batch size) -> epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder

if TYPE_CHECKING:
    import torch


class MetricAggregationCallback(Callback):
    """Averages every batch metric over the loader, weighted by batch size.

    Per batch it adds ``value * batch_size`` and ``batch_size`` to two running sums per key:
    floats for CPU tensors and numbers (one ``.item()`` per metric), detached tensors on
    accelerators (no device synchronisation per batch). At loader end
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

    def on_loader_start(self, runner: Any) -> None:
        self._sums = {}

    def on_batch_end(self, runner: Any) -> None:
        import torch  # here, not at module level: building the callback needs no torch

        bs = runner.batch_size
        sums = self._sums
        for key, value in runner.batch_metrics.items():
            if isinstance(value, torch.Tensor):
                try:
                    value = value.item() if value.is_cpu else _on_device(value)
                except RuntimeError as err:  # more than one element
                    raise ValueError(f"batch metric {key!r} has shape {tuple(value.shape)}; "
                                     "batch metrics must be numbers or one-element tensors"
                                     ) from err
            acc = sums.get(key)
            if acc is None:
                sums[key] = [value * bs, bs]
            else:
                acc[0] += value * bs
                acc[1] += bs

    def on_loader_end(self, runner: Any) -> None:
        import torch.distributed as dist

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
        return {"sums": {key: list(acc) for key, acc in self._sums.items()}}

    def load_loader_state_dict(self, state: dict[str, Any]) -> None:
        self._sums = {key: list(acc) for key, acc in state["sums"].items()}

    def running(self, key: str) -> float | None:
        """The mean of ``key`` over the batches of the current loader so far, or ``None``."""
        acc = self._sums.get(key)
        return None if acc is None or not acc[1] else _mean(key, acc[0], acc[1])

    def __repr__(self) -> str:
        return "MetricAggregationCallback()"


def _on_device(value: torch.Tensor) -> torch.Tensor:
    if value.numel() != 1:
        raise RuntimeError("not a scalar")
    return value.detach().reshape(())


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
