"""The batch fast path: a DataLoader over in-memory tensors iterated without the DataLoader.

A `DataLoader` with the default collate and no workers fetches a batch by indexing its dataset
once per sample and stacking the samples (`default_collate`). For a `TensorDataset` (or a
`Subset` of one) the same batch is one indexing operation per tensor (``index_select``). The fast
path draws the indices from the loader's own batch sampler and replays the draws the
DataLoader's iterator makes — first its base seed (one int64 from ``loader.generator``, or from
the global generator), then whatever the sampler draws — so the random streams, the batches
(``torch.equal``, same dtype, shape and structure: a list of tensors) and the trained weights
are bit-identical to the DataLoader's. A dataset with ``__getitems__`` gets its batch through it
and `default_collate`, exactly as the DataLoader fetches it, without the DataLoader's iterator.

`decide` says per loader whether the fast path applies, and if not, why; it applies only where
it is provably equivalent (see `ineligible`). See docs/runtime.md, "The batch fast path".
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
)
from torch.utils.data._utils.collate import default_collate
from torch.utils.data.datapipes.datapipe import MapDataPipe

#: The samplers whose indices the fast path draws (under the DataLoader's `BatchSampler`).
SAMPLERS = (SequentialSampler, RandomSampler, SubsetRandomSampler, DistributedSampler)

#: How a loader's batches are iterated: `iter` (the DataLoader itself) or `batches`.
Iterate = Callable[[Any], Iterator[Any]]


@dataclass(frozen=True)
class Decision:
    """Whether loader ``loader`` takes the fast path; ``reason``: how it fetches, or why not."""

    loader: str
    used: bool
    reason: str

    def __str__(self) -> str:
        if self.used:
            return f"loader {self.loader!r}: batch fast path ({self.reason})"
        return f"loader {self.loader!r}: DataLoader (no fast path: {self.reason})"


def decide(name: str, loader: Any, enabled: bool) -> tuple[Decision, Iterate]:
    """The decision for ``loader`` and the function that iterates it (`batches` or `iter`)."""
    if not enabled:
        return Decision(name, False, "turned off by fast_path=False"), iter
    problem = ineligible(loader)
    if problem is not None:
        return Decision(name, False, problem), iter
    sampler = loader.batch_sampler.sampler
    how = (f"{type(loader.dataset).__name__}, {type(sampler).__name__}, "
           f"{'one indexing per tensor' if _tensors(loader.dataset) else '__getitems__'}")
    return Decision(name, True, how), batches


def ineligible(loader: Any) -> str | None:
    """Why the fast path would not give ``loader``'s batches bit-exactly, or ``None``."""
    if not isinstance(loader, DataLoader):
        return f"it is a {type(loader).__name__}, not a torch DataLoader"
    if type(loader) is not DataLoader:
        return f"it is a DataLoader subclass ({type(loader).__name__})"
    if isinstance(loader.dataset, IterableDataset):
        return "its dataset is an IterableDataset"
    if isinstance(loader.dataset, MapDataPipe):  # its iterator shards it
        return "its dataset is a MapDataPipe"
    if loader.num_workers:
        return f"it loads in worker processes (num_workers={loader.num_workers})"
    if loader.batch_sampler is None:
        return "it has batch_size=None (no batching)"
    if loader.collate_fn is not default_collate:
        return f"it has a collate_fn of its own ({_name(loader.collate_fn)})"
    if loader.worker_init_fn is not None:
        return f"it has a worker_init_fn ({_name(loader.worker_init_fn)})"
    if loader.pin_memory and torch.accelerator.is_available():
        return "it pins memory (pin_memory=True)"
    if loader.timeout:  # its iterator refuses a timeout without workers
        return f"it has a timeout ({loader.timeout})"
    return _sampling_problem(loader) or _dataset_problem(loader.dataset)


def _sampling_problem(loader: DataLoader[Any]) -> str | None:
    batch_sampler = loader.batch_sampler
    if type(batch_sampler) is not BatchSampler:
        return f"it has a batch sampler of its own ({type(batch_sampler).__name__})"
    if type(batch_sampler.sampler) not in SAMPLERS:
        return f"it has a sampler of its own ({type(batch_sampler.sampler).__name__})"
    return None


def _dataset_problem(dataset: Any) -> str | None:
    tensors = _tensors(dataset)
    if tensors is not None:
        for tensor in tensors:
            if tensor.layout is not torch.strided or not tensor.is_contiguous():
                return "a tensor of its TensorDataset is not a dense contiguous tensor"
            if tensor.requires_grad:
                return "a tensor of its TensorDataset requires grad"
        return None
    if callable(getattr(dataset, "__getitems__", None)):
        return None
    return (f"its dataset ({type(dataset).__name__}) has no batched indexing: make it a "
            "TensorDataset, or give it a __getitems__(indices) method")


def _tensors(dataset: Any) -> tuple[torch.Tensor, ...] | None:
    """The tensors of a `TensorDataset` or of a `Subset` of one; ``None`` for another dataset."""
    if type(dataset) is Subset:
        dataset = dataset.dataset
    if type(dataset) is TensorDataset:
        return tuple(dataset.tensors)
    return None


def batches(loader: DataLoader[Any]) -> Iterator[Any]:
    """``loader``'s batches, drawn as its own iterator draws them (see the module docstring).

    Requires `ineligible(loader)` to be ``None`` for the loader the decision was made on (a
    copy with a batch sampler that skips batches, for a mid-epoch resume, is iterated too).
    """
    sampler_batches = iter(loader.batch_sampler)  # type: ignore[arg-type]
    # The iterator's base seed, drawn as `_BaseDataLoaderIter.__init__` draws it (the workers'
    # seed: unused without workers, but the draw advances the generator).
    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
    return map(_taker(loader.dataset), sampler_batches)


def _taker(dataset: Any) -> Callable[[list[int]], Any]:
    """A batch of indices -> the batch, as the DataLoader's fetcher and default collate give it."""
    tensors = _tensors(dataset)
    if tensors is None:
        getitems = dataset.__getitems__

        def fetch(indices: list[int]) -> Any:
            return default_collate(getitems(indices))
        return fetch
    if type(dataset) is Subset:
        base = torch.as_tensor(dataset.indices)

        def take_subset(indices: list[int]) -> list[torch.Tensor]:
            index = base.index_select(0, _index(indices))
            return [tensor.index_select(0, index) for tensor in tensors]
        return take_subset

    def take(indices: list[int]) -> list[torch.Tensor]:
        index = _index(indices)
        return [tensor.index_select(0, index) for tensor in tensors]
    return take


def _index(indices: list[int]) -> torch.Tensor:
    """The indices as an int64 tensor (through an `array`: a third of `torch.as_tensor`'s time)."""
    try:
        return torch.frombuffer(array("q", indices), dtype=torch.int64)
    except TypeError:  # not plain ints (a SubsetRandomSampler over a tensor yields tensors)
        return torch.as_tensor(indices)


def _name(function: Any) -> str:
    return str(getattr(function, "__name__", None) or type(function).__name__)
