"""Seeding: one call sets every random generator a run draws from."""

from __future__ import annotations

import importlib
import random
from types import ModuleType

import torch


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - numpy ships with most torch installs
        return None


numpy = _optional("numpy")


def set_global_seed(seed: int) -> None:
    """Seed python's `random`, numpy (if installed) and torch (CPU and every CUDA device)."""
    random.seed(seed)
    if numpy is not None:
        numpy.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
