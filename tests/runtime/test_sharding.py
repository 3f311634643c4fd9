"""Sharding train loaders: a DistributedSampler that keeps the loader's options, or a warning."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
)

import stagegraph as sg
from stagegraph.runtime.sharding import ShardingWarning, shard, shard_loaders

DATA = TensorDataset(torch.arange(32).float())


def indices(loader: Any) -> list[list[int]]:
    return [batch[0].int().tolist() for batch in loader]


def collate(samples: list[Any]) -> Any:
    return torch.utils.data.default_collate(samples)


def init_worker(worker_id: int) -> None:
    pass


def test_every_option_but_the_sampler_is_kept() -> None:
    generator = torch.Generator()
    user = DataLoader(DATA, batch_size=4, shuffle=True, collate_fn=collate, num_workers=2,
                      pin_memory=True, drop_last=True, timeout=5, worker_init_fn=init_worker,
                      generator=generator, prefetch_factor=3, persistent_workers=True)
    sharded = shard(user, rank=1, world_size=2, seed=9)
    sampler = sharded.sampler
    assert isinstance(sampler, DistributedSampler)
    assert (sampler.num_replicas, sampler.rank, sampler.shuffle, sampler.seed) == (2, 1, True, 9)
    for option in ("batch_size", "collate_fn", "num_workers", "pin_memory", "drop_last",
                   "timeout", "worker_init_fn", "generator", "prefetch_factor",
                   "persistent_workers", "dataset"):
        assert getattr(sharded, option) is getattr(user, option), option


def test_ranks_split_each_global_batch() -> None:
    """Rank r of w takes every w-th index of the permutation one replica would draw, so the
    ranks' batches of b together are the single process's batch of w * b."""
    reference = DataLoader(DATA, batch_size=8,
                           sampler=DistributedSampler(DATA, 1, 0, shuffle=True, seed=3))
    ranks = [shard(DataLoader(DATA, batch_size=4, shuffle=True), rank=r, world_size=2, seed=3)
             for r in (0, 1)]
    for epoch in (1, 2):
        for sharded in (reference, *ranks):
            sharded.sampler.set_epoch(epoch)
        whole = indices(reference)
        halves = [indices(sharded) for sharded in ranks]
        for k, batch in enumerate(whole):
            assert sorted(halves[0][k] + halves[1][k]) == sorted(batch)
            assert halves[0][k] == batch[0::2] and halves[1][k] == batch[1::2]


def test_a_sequential_loader_stays_in_order() -> None:
    sharded = shard(DataLoader(DATA, batch_size=4), rank=1, world_size=2, seed=0)
    assert not sharded.sampler.shuffle
    assert indices(sharded)[0] == [1, 3, 5, 7]


class Stream(IterableDataset):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(torch.arange(4).float())


class MyLoader(DataLoader):  # type: ignore[type-arg]
    pass


KEPT = {
    "batch sampler": (DataLoader(DATA, batch_sampler=BatchSampler(SequentialSampler(DATA), 4,
                                                                  False)),
                      "it has a batch_sampler of its own (BatchSampler)"),
    "weighted": (DataLoader(DATA, sampler=WeightedRandomSampler([1.0] * 32, 32)),
                 "it has a sampler of its own (WeightedRandomSampler)"),
    "replacement": (DataLoader(DATA, sampler=RandomSampler(DATA, replacement=True)),
                    "it has a sampler of its own (RandomSampler)"),
    "iterable": (DataLoader(Stream()), "its dataset is an IterableDataset"),
    "subclass": (MyLoader(DATA), "it is a DataLoader subclass (MyLoader)"),
    "list": ([torch.zeros(2)], "it is a list, not a torch DataLoader"),
}


@pytest.mark.parametrize("case", list(KEPT))
def test_loaders_it_cannot_shard_are_kept_with_a_warning(case: str) -> None:
    loader, reason = KEPT[case]
    with pytest.warns(ShardingWarning) as caught:
        assert shard(loader, rank=0, world_size=2, seed=0, where="stage 's' > loader 't'") \
            is loader
    message = str(caught[0].message)
    assert message.startswith(f"stage 's' > loader 't': {reason}")
    assert "so it is not sharded: every rank iterates all of it" in message
    assert "DistributedSampler" in message


def test_a_users_distributed_sampler_is_theirs() -> None:
    own = DataLoader(DATA, sampler=DistributedSampler(DATA, num_replicas=4, rank=3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shard(own, rank=0, world_size=2, seed=0) is own


def stage_plan(name: str = "train") -> Any:
    exp = sg.Experiment("s", model=lambda: None, criterion=lambda: None)
    exp.add_stage(name, loaders={"train_a": [], "valid": [], "infer": []})
    return sg.compile(exp).stage(name)


def test_only_train_loaders_of_training_stages_are_sharded() -> None:
    loaders = {name: DataLoader(DATA, batch_size=4) for name in ("train_a", "valid", "infer")}
    sharded = shard_loaders(loaders, stage_plan(), rank=0, world_size=2, seed=0)
    assert isinstance(sharded["train_a"].sampler, DistributedSampler)
    assert sharded["valid"] is loaders["valid"] and sharded["infer"] is loaders["infer"]
    infer = stage_plan("infer")
    assert shard_loaders(loaders, infer, rank=0, world_size=2, seed=0) is loaders


def test_no_warning_when_told_not_to() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = shard_loaders({"train_a": [1], "valid": [], "infer": []}, stage_plan(), rank=1,
                             world_size=2, seed=0, warn=False)
    assert kept["train_a"] == [1]
