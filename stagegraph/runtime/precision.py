"""Mixed precision per stage: autocast around the batch handler, and a GradScaler where it helps.

``fp32`` calls the handler as it is. ``amp`` on CUDA autocasts to float16 and gives the optimizer
callback a `torch.amp.GradScaler` in ``runner.scaler``; elsewhere (CPU, MPS) it autocasts to
bfloat16, which needs no scaler. ``bf16`` autocasts to bfloat16 on any device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Step = Callable[[Any, Any], Any]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` for full precision."""
    if precision == "fp32":
        return None
    if precision == "amp" and device.type == "cuda":
        return torch.float16
    return torch.bfloat16


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A fresh GradScaler for float16 autocast on CUDA, else ``None``."""
    if autocast_dtype(precision, device) is torch.float16 and torch.cuda.is_available():
        return torch.amp.GradScaler("cuda")
    return None


def precision_step(step: Step, precision: str, device: torch.device) -> Step:
    """``step`` itself for ``fp32``, else ``step`` wrapped in autocast for the device."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return step
    device_type = device.type

    def autocast_step(runner: Any, batch: Any) -> Any:
        with torch.autocast(device_type=device_type, dtype=dtype):
            return step(runner, batch)

    return autocast_step
