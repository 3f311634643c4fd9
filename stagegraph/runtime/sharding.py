"""Sharding: each rank of a distributed run trains on its own share of every ``train*`` loader.

A training loader that is a plain `DataLoader` drawing indices with ``shuffle=True`` or
``shuffle=False`` (a `RandomSampler` without replacement or a `SequentialSampler`) is rebuilt
with a `DistributedSampler` — same dataset, batch size (per rank), shuffle setting, and every
other option the user gave: ``collate_fn``, ``num_workers``, ``pin_memory``, ``drop_last``,
``worker_init_fn``, ``generator``, ``persistent_workers``, ``prefetch_factor``... The sampler
shuffles with the experiment's seed plus the epoch (the runner calls ``set_epoch``), the same
permutation on every rank, each rank taking every ``world_size``-th index.

A loader that already has a `DistributedSampler` is the user's own sharding and is kept. Any
other loader — a batch sampler or sampler of its own, an `IterableDataset`, a `DataLoader`
subclass, an iterable that is not a `DataLoader` — is kept as it is, with a `ShardingWarning`:
every rank then iterates all of it, which still trains correctly (each rank draws the same
batches, since the runner seeds every rank alike, and DDP averages identical gradients) but is
no faster. Validation and inference loaders are never sharded: every rank sees all of them.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from stagegraph.compiler.plan import StagePlan
from stagegraph.graph.enums import LoaderKind

#: DataLoader arguments the rebuilt loader sets itself; every other one is copied.
_REBUILT = frozenset({"self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler"})
_HOW = ("to shard it, give it a sampler that knows the rank "
        "(torch.utils.data.DistributedSampler, or a batch sampler built over one)")


class ShardingWarning(UserWarning):
    """A training loader of a distributed run is not sharded; every rank iterates all of it."""


def shard_loaders(loaders: dict[str, Any], stage: StagePlan, *, rank: int, world_size: int,
                  seed: int, warn: bool = True) -> dict[str, Any]:
    """``loaders`` with each ``train*`` loader of a training stage sharded across the ranks."""
    if stage.is_infer:
        return loaders
    sharded = dict(loaders)
    for plan in stage.loaders:
        if plan.kind is LoaderKind.train and plan.name in sharded:
            where = f"stage {stage.name!r} > loader {plan.name!r}"
            sharded[plan.name] = shard(sharded[plan.name], rank=rank, world_size=world_size,
                                       seed=seed, where=where, warn=warn)
    return sharded


def shard(loader: Any, *, rank: int, world_size: int, seed: int, where: str = "loader",
          warn: bool = True) -> Any:
    """``loader`` rebuilt with a `DistributedSampler`, or as it is (see the module docstring)."""
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, DistributedSampler):
        return loader
    problem = unshardable(loader)
    if problem is not None:
        if warn:
            warnings.warn(f"{where}: {problem}, so it is not sharded: every rank iterates all of "
                          f"it (correct, but not faster); {_HOW}", ShardingWarning, stacklevel=2)
        return loader
    sampler: DistributedSampler[Any] = DistributedSampler(
        loader.dataset, num_replicas=world_size, rank=rank,
        shuffle=isinstance(loader.sampler, RandomSampler), seed=seed)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      **loader_options(loader))


def unshardable(loader: Any) -> str | None:
    """Why ``loader`` cannot get a `DistributedSampler` in place of its sampler, or ``None``."""
    if not isinstance(loader, DataLoader):
        return f"it is a {type(loader).__name__}, not a torch DataLoader"
    if type(loader) is not DataLoader:
        return f"it is a DataLoader subclass ({type(loader).__name__}) that cannot be rebuilt"
    if isinstance(loader.dataset, IterableDataset):
        return "its dataset is an IterableDataset, which has no indices to split"
    if loader.batch_size is None and loader.batch_sampler is not None:
        return f"it has a batch_sampler of its own ({type(loader.batch_sampler).__name__})"
    sampler = loader.sampler
    if type(sampler) is SequentialSampler:
        return None
    if (type(sampler) is RandomSampler and not sampler.replacement
            and sampler.num_samples == len(loader.dataset)):  # type: ignore[arg-type]
        return None
    return f"it has a sampler of its own ({type(sampler).__name__})"


def loader_options(loader: DataLoader) -> dict[str, Any]:
    """The loader's constructor options other than dataset, batch size and sampling."""
    names = inspect.signature(DataLoader.__init__).parameters
    return {name: getattr(loader, name) for name in names
            if name not in _REBUILT and hasattr(loader, name)}
