"""Helpers for the built-in callback tests: a stand-in runner and a loop that drives callbacks
through the runner's events the way `stagegraph.runtime.Runner` does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import torch


class FakeRunner(SimpleNamespace):
    """A runner stand-in with every attribute the callbacks may read (weak-referenceable)."""


def make_runner(**overrides: Any) -> FakeRunner:
    state: dict[str, Any] = dict(
        model=None, criterion=None, optimizer=None, scheduler=None, scaler=None,
        device=torch.device("cpu"), loaders={}, input={}, output={}, batch_metrics={},
        loader_metrics={}, epoch_metrics={}, valid_metrics={}, best_valid_metrics={},
        is_best_valid=False, main_metric="loss", minimize_metric=True, valid_loader="valid",
        stage_name="train", is_infer_stage=False, epoch=1, num_epochs=1, global_epoch=1,
        global_batch_step=0, global_sample_step=0, loader_name="train", loader_len=0,
        loader_batch_step=0, loader_sample_step=0, loader_batch_size=0, batch_size=0,
        is_train_loader=True, is_valid_loader=False, is_infer_loader=False,
        need_early_stop=False, need_exception_reraise=True, is_check_run=False,
        distributed_rank=-1, is_distributed_master=True, is_distributed_worker=False,
        exception=None, logdir=None, plan=None, stage=None, experiment=None, callbacks={},
        precision="fp32",
    )
    state.update(overrides)
    return FakeRunner(**state)


def fire(event: str, runner: Any, callbacks: Iterable[Any]) -> None:
    for callback in callbacks:
        getattr(callback, event)(runner)


def run_loader(runner: Any, callbacks: Sequence[Any], name: str,
               batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """One loader of ``(features, targets)`` batches: model forward, then the batch events."""
    runner.loader_name = name
    runner.is_train_loader = name.startswith("train")
    runner.is_valid_loader = name.startswith("valid")
    runner.is_infer_loader = name.startswith("infer")
    runner.loader_len = len(batches)
    runner.loader_batch_step = runner.loader_sample_step = 0
    runner.loader_metrics = {}
    if isinstance(runner.model, torch.nn.Module):
        runner.model.train(runner.is_train_loader)
    fire("on_loader_start", runner, callbacks)
    with torch.set_grad_enabled(runner.is_train_loader):
        for features, targets in batches:
            runner.global_batch_step += 1
            runner.loader_batch_step += 1
            runner.batch_size = len(features)
            runner.global_sample_step += len(features)
            runner.loader_sample_step += len(features)
            runner.input = {"features": features, "targets": targets}
            runner.batch_metrics = {}
            fire("on_batch_start", runner, callbacks)
            runner.output = {"logits": runner.model(features)}
            fire("on_batch_end", runner, callbacks)
    fire("on_loader_end", runner, callbacks)


def run_epoch(runner: Any, callbacks: Sequence[Any],
              loaders: dict[str, Sequence[tuple[torch.Tensor, torch.Tensor]]]) -> None:
    runner.epoch += 1
    runner.global_epoch += 1
    runner.epoch_metrics = {}
    fire("on_epoch_start", runner, callbacks)
    for name, batches in loaders.items():
        run_loader(runner, callbacks, name, batches)
    fire("on_epoch_end", runner, callbacks)


def batches(sizes: Sequence[int], features: int = 4, classes: int = 3, seed: int = 0
            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, features, generator=gen),
             torch.randint(0, classes, (n,), generator=gen)) for n in sizes]
