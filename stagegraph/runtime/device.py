"""Devices: resolve ``auto``, refuse a missing device early, and move batches onto the device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from stagegraph.runtime.errors import BatchError, DeviceError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and bool(backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The `torch.device` for ``name``; ``auto`` picks cuda, then mps, then cpu.

    Raises `DeviceError` when the device is not available here, before any work starts.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"device {name!r} is not a device torch knows; use 'cpu', 'cuda', "
                          "'cuda:N', 'mps' or 'auto'") from err
    _check_available(device)
    return device


def _check_available(device: torch.device) -> None:
    if device.type == "cpu":
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r} was requested, but CUDA is not available "
                              "on this machine; run with device='cpu' or device='auto'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {str(device)!r} was requested, but this machine has "
                              f"{count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        return
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(f"device {str(device)!r} was requested, but MPS is not available "
                              "on this machine; run with device='cpu' or device='auto'")
        return
    raise DeviceError(f"device type {device.type!r} is not supported; use 'cpu', 'cuda' or 'mps'")


def batch_mover(device: torch.device, pinned: bool = False) -> Callable[[Any], Any]:
    """A function moving the tensors of a batch (nested dicts, lists, tuples) to ``device``.

    Containers are rebuilt with the same type; anything that is not a tensor is kept as it is.
    ``pinned``: the loader pins its batches in page-locked memory, so a copy to CUDA is issued
    with ``non_blocking=True`` and overlaps the work already queued on the GPU (from pageable
    memory a non-blocking copy gains nothing, and to MPS it is not safe in every torch version).
    """
    tensor = torch.Tensor
    if device.type == "cpu":
        # ``to`` would return a CPU tensor itself, but its argument parsing costs a microsecond.
        def leaf(value: torch.Tensor) -> torch.Tensor:
            return value if value.is_cpu else value.to(device)
    else:
        non_blocking = pinned and device.type == "cuda"

        def leaf(value: torch.Tensor) -> torch.Tensor:
            return value.to(device, non_blocking=non_blocking)

    def move(value: Any) -> Any:
        kind = type(value)
        if kind is tensor:
            return leaf(value)
        if kind is list:
            return [leaf(v) if type(v) is tensor else move(v) for v in value]
        if kind is tuple:
            return tuple([leaf(v) if type(v) is tensor else move(v) for v in value])
        if kind is dict:
            return {k: leaf(v) if type(v) is tensor else move(v) for k, v in value.items()}
        return _move_other(value, move, leaf)

    return move


def _move_other(value: Any, move: Callable[[Any], Any], leaf: Callable[[Any], Any]) -> Any:
    """Tensor subclasses, dict subclasses and namedtuples, other sequences; the rest as it is."""
    kind = type(value)
    if isinstance(value, torch.Tensor):
        return leaf(value)
    if isinstance(value, dict):
        return kind({k: move(v) for k, v in value.items()})
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return kind(*[move(v) for v in value])
    if isinstance(value, (list, tuple)):
        return kind([move(v) for v in value])
    return value


def batch_size(batch: Any) -> int:
    """Samples in ``batch``: the first value of a dict batch, else the first item of a sequence.

    `BatchError` says what a batch should be when it is neither.
    """
    try:
        first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
        shape = getattr(first, "shape", None)
        return int(shape[0]) if shape else len(first)
    except (TypeError, IndexError, KeyError, StopIteration, AttributeError) as err:
        raise BatchError(_batch_problem(batch)) from err


def _batch_problem(batch: Any) -> str:
    kind = type(batch).__name__
    if isinstance(batch, (dict, list, tuple)) and not batch:
        what = f"an empty {kind}"
    elif isinstance(batch, dict):
        what = f"a dict whose first value is {type(next(iter(batch.values()))).__name__}"
    elif isinstance(batch, (list, tuple)):
        what = f"a {kind} whose first item is {type(batch[0]).__name__}"
    else:
        what = f"a value of type {kind}"
    return (f"the loader yielded {what}, which has no batch size; a batch is a dict whose first "
            "value is a tensor, or a tuple or list whose first item is a tensor (as a "
            "DataLoader over a TensorDataset yields); make the loader yield one of those")
