"""The batch fast path (`runtime/fastpath.py`): the DataLoader's batches, bit for bit, faster.

Every sampler kind, with and without drop_last, shuffled by a seeded generator and by the global
one: each batch `torch.equal` to the DataLoader's over several epochs, and the generators in the
same state after each; trained weights equal with the fast path on and off; ineligible loaders
named with the reason; a killed-and-resumed run and a 2-rank DDP run bit-identical too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from test_ddp_torchrun import launch
from test_resume_kill import assert_same_result, err, harness
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
)
from torch.utils.data.dataloader import default_collate

import stagegraph as sg
from stagegraph.compiler.text import plan_to_text
from stagegraph.runtime.callbacks import ConsoleLogger
from stagegraph.runtime.fastpath import batches, decide, ineligible
from stagegraph.runtime.fastpath_report import LoaderReport, recorded

FIXTURES = Path(__file__).parent / "fixtures"


def dataset(samples: int = 45) -> TensorDataset:
    gen = torch.Generator().manual_seed(samples)
    x = torch.randn(samples, 3, generator=gen)
    return TensorDataset(x, (x[:, 0] > 0).long(), torch.arange(samples, dtype=torch.float64))


class Batched(Dataset[Any]):
    """A map-style dataset with batched indexing of its own (dicts of tensors)."""

    def __init__(self) -> None:
        self.x = torch.randn(45, 2, generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        return [{"x": self.x[i]} for i in indices]


def _gen(seeded: bool) -> torch.Generator | None:
    return torch.Generator().manual_seed(4) if seeded else None


#: Loader factories by sampler kind: (seeded generator?, drop_last) -> a fresh DataLoader.
KINDS: dict[str, Callable[[bool, bool], DataLoader[Any]]] = {
    "sequential": lambda g, d: DataLoader(dataset(), batch_size=8, drop_last=d),
    "random": lambda g, d: DataLoader(dataset(), batch_size=8, shuffle=True, drop_last=d,
                                      generator=_gen(g)),
    "random_sampler_generator": lambda g, d: DataLoader(
        dataset(), batch_size=8, drop_last=d, sampler=RandomSampler(dataset(), generator=_gen(g))),
    "random_replacement": lambda g, d: DataLoader(
        dataset(), batch_size=8, drop_last=d, generator=_gen(g),
        sampler=RandomSampler(dataset(), replacement=True, num_samples=30)),
    "subset_random": lambda g, d: DataLoader(
        dataset(), batch_size=8, drop_last=d, generator=_gen(g),
        sampler=SubsetRandomSampler(list(range(0, 45, 2)), generator=_gen(g))),
    "subset_random_tensor": lambda g, d: DataLoader(
        dataset(), batch_size=8, drop_last=d, generator=_gen(g),
        sampler=SubsetRandomSampler(torch.arange(3, 40), generator=_gen(g))),
    "distributed": lambda g, d: DataLoader(
        dataset(), batch_size=4, drop_last=d, generator=_gen(g),
        sampler=DistributedSampler(dataset(), num_replicas=2, rank=1, shuffle=True, seed=9)),
    "batch_sampler": lambda g, d: DataLoader(dataset(), generator=_gen(g), batch_sampler=(
        BatchSampler(RandomSampler(dataset(), generator=_gen(g)), 7, drop_last=d))),
    "batch_sampler_sequential": lambda g, d: DataLoader(dataset(), batch_sampler=(
        BatchSampler(SequentialSampler(dataset()), 7, drop_last=d))),
    "subset_dataset": lambda g, d: DataLoader(Subset(dataset(), [5, 3, *range(10, 40)]),
                                              batch_size=8, shuffle=True, drop_last=d,
                                              generator=_gen(g)),
    "subset_range": lambda g, d: DataLoader(Subset(dataset(), range(4, 44)), batch_size=8,
                                            shuffle=True, drop_last=d, generator=_gen(g)),
    "getitems_dataset": lambda g, d: DataLoader(Batched(), batch_size=8, shuffle=True,
                                                drop_last=d, generator=_gen(g)),
}


def _epochs(loader: DataLoader[Any], iterate: Callable[[Any], Any], epochs: int = 3) -> list[Any]:
    """Every batch of ``epochs`` epochs, then after each the generators' states."""
    torch.manual_seed(17)
    seen: list[Any] = []
    for epoch in range(epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        seen.extend(iterate(loader))
        seen.append(torch.get_rng_state())
        if loader.generator is not None:
            seen.append(loader.generator.get_state())
    return seen


def _assert_identical(expected: Any, actual: Any) -> None:
    assert type(actual) is type(expected)
    if isinstance(expected, torch.Tensor):
        assert (actual.dtype, actual.shape, actual.stride()) == (
            expected.dtype, expected.shape, expected.stride())
        assert torch.equal(actual, expected)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            _assert_identical(expected[key], actual[key])
    else:
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            _assert_identical(e, a)


@pytest.mark.parametrize("seeded", [True, False], ids=["generator", "global"])
@pytest.mark.parametrize("drop_last", [False, True], ids=["keep_last", "drop_last"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_batch_and_generator_state_equals_the_dataloaders(
        kind: str, drop_last: bool, seeded: bool) -> None:
    loader = KINDS[kind](seeded, drop_last)
    decision, iterate = decide("train", loader, enabled=True)
    assert decision.used and iterate is batches, decision
    expected = _epochs(KINDS[kind](seeded, drop_last), iter)
    _assert_identical(expected, _epochs(loader, batches))
    assert len(loader) == sum(1 for _ in batches(loader))


def _not_dataloader() -> Any:
    return [torch.zeros(2)]


class Stream(IterableDataset[Any]):
    def __iter__(self) -> Any:
        return iter(torch.zeros(4, 2))


class Plain(Dataset[Any]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(2)


class Loader(DataLoader[Any]):
    pass


class Odd(SequentialSampler):
    pass


INELIGIBLE: dict[str, tuple[Callable[[], Any], str]] = {
    "collate": (lambda: DataLoader(dataset(), batch_size=4, collate_fn=lambda b: b),
                "it has a collate_fn of its own (<lambda>)"),
    "workers": (lambda: DataLoader(dataset(), batch_size=4, num_workers=2),
                "it loads in worker processes (num_workers=2)"),
    "worker_init_fn": (lambda: DataLoader(dataset(), batch_size=4, worker_init_fn=print),
                       "it has a worker_init_fn (print)"),
    "iterable": (lambda: DataLoader(Stream(), batch_size=2),
                 "its dataset is an IterableDataset"),
    "no_batched_indexing": (lambda: DataLoader(Plain(), batch_size=2),
                            "its dataset (Plain) has no batched indexing: make it a "
                            "TensorDataset, or give it a __getitems__(indices) method"),
    "no_batching": (lambda: DataLoader(dataset(), batch_size=None),
                    "it has batch_size=None (no batching)"),
    "subclass": (lambda: Loader(dataset(), batch_size=4),
                 "it is a DataLoader subclass (Loader)"),
    "sampler": (lambda: DataLoader(dataset(), batch_size=4, sampler=Odd(dataset())),
                "it has a sampler of its own (Odd)"),
    "timeout": (lambda: DataLoader(dataset(), batch_size=4, timeout=5.0),
                "it has a timeout (5.0)"),
    "not_a_dataloader": (_not_dataloader, "it is a list, not a torch DataLoader"),
    "not_contiguous": (lambda: DataLoader(TensorDataset(torch.zeros(3, 4).t()), batch_size=2),
                       "a tensor of its TensorDataset is not a dense contiguous tensor"),
}


@pytest.mark.parametrize("kind", list(INELIGIBLE))
def test_ineligible_loaders_fall_back_to_the_dataloader_with_the_reason(kind: str) -> None:
    make, reason = INELIGIBLE[kind]
    loader = make()
    assert ineligible(loader) == reason
    decision, iterate = decide("train", loader, enabled=True)
    assert (decision.used, decision.reason, iterate) == (False, reason, iter)
    assert str(decision) == f"loader 'train': DataLoader (no fast path: {reason})"


def test_turned_off_the_fast_path_is_not_taken() -> None:
    decision, iterate = decide("valid", KINDS["random"](True, False), enabled=False)
    assert (decision.used, iterate) == (False, iter)
    assert str(decision) == "loader 'valid': DataLoader (no fast path: turned off by " \
                            "fast_path=False)"


# --- runs ---------------------------------------------------------------------------------------
def _train() -> DataLoader[Any]:
    return DataLoader(dataset(52), batch_size=8, shuffle=True)


def _private() -> DataLoader[Any]:
    return DataLoader(dataset(52), batch_size=8, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(2))


def experiment(fast_path: bool = True, **stage: Any) -> sg.Experiment:
    exp = sg.Experiment("fp", seed=5, criterion=nn.CrossEntropyLoss, fast_path=fast_path,
                        model=lambda: nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.2),
                                                    nn.Linear(8, 2)))
    valid = lambda: DataLoader(dataset(12), batch_size=5)  # noqa: E731
    exp.add_stage("a", num_epochs=2, loaders={"train": _train, "valid": valid},
                  optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=0.01), **stage)
    exp.add_stage("b", num_epochs=2, loaders={"train": _private, "valid": valid,
                                              "valid_custom": lambda: DataLoader(
                                                  dataset(12), batch_size=5,
                                                  collate_fn=lambda b: default_collate(b))},
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    return exp


def _run(exp: sg.Experiment, **options: Any) -> Any:
    return sg.Runner(sg.compile(exp, device="cpu", verbose=False, **options)).run()


def _weights(run: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_trained_weights_and_metrics_are_bit_identical_with_the_fast_path_on_and_off() -> None:
    on, off = _run(experiment()), _run(experiment(fast_path=False))
    assert _same(_weights(on), _weights(off))
    assert on.epoch_metrics == off.epoch_metrics
    assert {name: d.used for name, d in on.fast_path.items()} == {
        "train": True, "valid": True, "valid_custom": False}
    assert not any(d.used for d in off.fast_path.values())


def test_the_switch_per_stage_the_plan_and_the_console_say_what_is_used() -> None:
    plan = sg.compile(experiment(fast_path=False), device="cpu", verbose=False)
    assert [s.fast_path for s in plan.stages] == [False, False]
    assert "options: check_run=False, precision=fp32, fast_path=False" in plan_to_text(plan)
    exp = sg.Experiment("fp", model=lambda: nn.Linear(3, 2), criterion=nn.CrossEntropyLoss)
    exp.add_stage("a", fast_path=False, loaders={"train": _train})
    exp.add_stage("b", loaders={"train": _train})
    assert [s.fast_path for s in sg.compile(exp).stages] == [False, True]
    exp.add_stage("c", fast_path="no", loaders={"train": _train})
    assert "invalid value 'no' for 'fast_path'" in str(sg.compile(exp).diagnostics)
    out = io.StringIO()
    _run(experiment(callbacks={"console": ConsoleLogger(file=out)}))
    lines = out.getvalue().splitlines()
    assert lines[2:4] == [  # after the device line and the stage line
        "  loader 'train': batch fast path (TensorDataset, RandomSampler, one indexing per "
        "tensor)",
        "  loader 'valid': batch fast path (TensorDataset, SequentialSampler, one indexing per "
        "tensor)"]


class Cut(Exception):
    pass


class At(sg.Callback):
    """Raises `Cut` once, at train batch 5 of epoch 2 (of stage 'a')."""

    armed = False

    def on_batch_start(self, runner: Any) -> None:
        if At.armed and (runner.epoch, runner.is_train_loader,
                         runner.loader_batch_step) == (2, True, 5):
            At.armed = False
            raise Cut


def test_resumed_mid_epoch_through_the_fast_path_stays_bit_exact(tmp_path: Path) -> None:
    whole = _run(experiment(fast_path=False), logdir=str(tmp_path / "whole"))

    def cut(**options: Any) -> sg.Runner:
        plan = sg.compile(experiment(callbacks={"at": At()}), device="cpu", verbose=False,
                          logdir=str(tmp_path / "cut"))
        return sg.Runner(plan, checkpoint_every=2, **options)

    At.armed = True
    with pytest.raises(sg.runtime.RunError) as raised:
        cut().run()
    assert isinstance(raised.value.__cause__, Cut)
    resumed = cut(resume=True)
    assert resumed.resume_position.startswith("stage 'a' in epoch 2, loader 'train' after "
                                              "batch 4")
    resumed.run()
    assert _same(_weights(whole), _weights(resumed))
    assert resumed.epoch_metrics == whole.epoch_metrics


#: Killed and stopped mid-epoch (train loaders have 5 batches, a checkpoint every 3), every run
#: through the fast path; the reference runs without it.
CHAIN = ["batch:pretrain:1:train:5", "USR1@batch:aux:2:train:2", "batch:finetune:1:train:5",
         None]


def test_killed_mid_epoch_through_the_fast_path_resumes_to_the_dataloaders_weights(
        tmp_path: Path) -> None:
    ref, run, results = harness(tmp_path, CHAIN, extra=["--checkpoint-every", "3"],
                                ref_env={"STAGEGRAPH_TEST_FAST_PATH": "0"})
    assert [r.get("sigkill") or r["code"] for r in results] == [True, 75, True, 0], results
    assert "resuming from" in err(tmp_path, 3)
    assert_same_result(ref, run)


def test_two_ranks_draw_the_same_batches_and_train_the_same_weights(tmp_path: Path) -> None:
    command = ["-m", "stagegraph", "run", str(FIXTURES / "fastpath_ddp.py"), "--ddp", "2",
               "--quiet"]
    for name, flag in (("on", "1"), ("off", "0")):
        logdir = ["--logdir", str(tmp_path / name / "logs")] if name == "on" else []
        done = launch([*command, *logdir], tmp_path / name, SG_FAST_PATH=flag)
        assert done.code == 0, done.err
    assert _text(recorded(tmp_path / "on" / "logs")) == [  # by the master, for the run
        "train: loader 'train': fast path (TensorDataset, DistributedSampler, one indexing per "
        "tensor)",
        "train: loader 'valid': fast path (TensorDataset, SequentialSampler, one indexing per "
        "tensor)"]
    for rank in (0, 1):
        used = json.loads((tmp_path / "on" / f"fastpath.rank{rank}.json").read_text())
        assert used[0] == ("loader 'train': batch fast path (TensorDataset, DistributedSampler, "
                           "one indexing per tensor)")
        on, off = (torch.load(tmp_path / n / f"batches.rank{rank}.pt") for n in ("on", "off"))
        assert len(on) == len(off) == 10  # 2 epochs of 20 samples per rank in batches of 4
        _assert_identical(off, on)
        assert _same(*(torch.load(tmp_path / n / f"weights.rank{rank}.pt") for n in ("on", "off")))


def test_the_switch_per_loader_turns_off_only_the_loaders_it_names() -> None:
    exp = sg.Experiment("fp", seed=5, criterion=nn.CrossEntropyLoss,
                        model=lambda: nn.Linear(3, 2))
    exp.add_stage("a", loaders={"train": _train, "valid": lambda: DataLoader(dataset(12))},
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                  fast_path={"valid": False})
    run = _run(exp)
    assert [str(d) for d in run.fast_path.values()] == [
        "loader 'train': batch fast path (TensorDataset, RandomSampler, one indexing per tensor)",
        "loader 'valid': DataLoader (no fast path: turned off by fast_path=False)"]


def _text(reports: list[LoaderReport] | None) -> list[str]:
    assert reports is not None
    return [f"{r.stage}: {r}" for r in reports]
