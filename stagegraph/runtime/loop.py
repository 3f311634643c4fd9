"""Small helpers of the runner's loop: where an error happened, and what a loader says of itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def place(where: Mapping[str, object]) -> str:
    """Where, as in ``stage 'train', epoch 3, loader 'valid', batch 17``."""
    parts = [f"{key} {value!r}" if isinstance(value, str) else f"{key} {value}"
             for key, value in where.items() if key not in ("callback", "event")]
    if "callback" in where:
        parts.append(f"callback {where['callback']!r} ({where['event']})")
    return ", ".join(parts) or "experiment level"


def describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def loader_len(loader: Any, limit: int | None) -> int | None:
    """The loader's number of batches (at most ``limit``); ``None`` when it has no length."""
    try:
        length = len(loader)
    except TypeError:  # an iterable without a length (an IterableDataset, a generator)
        return None
    return min(length, limit) if limit is not None else length


def loader_batch_size(loader: Any) -> int | None:
    sampler = getattr(loader, "batch_sampler", None)
    size = getattr(sampler, "batch_size", None) if sampler is not None else None
    return size if size is not None else getattr(loader, "batch_size", None)


def set_train_mode(model: Any, mode: bool) -> None:
    if isinstance(model, nn.Module):
        model.train(mode)
    elif isinstance(model, Mapping):
        for module in model.values():
            if isinstance(module, nn.Module):
                module.train(mode)
