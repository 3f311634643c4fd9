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
    """Seed python's `random`, numpy (if installed) and torch (CPU, and CUDA or MPS if present).

    ``torch.manual_seed`` would do torch's part too, but on a machine without CUDA it queues a
    lazy seeding call per backend, formatting a stack trace each time (~0.3 ms per call, and the
    queue grows); the runner seeds every epoch and loader, so it seeds the present devices only.
    """
    random.seed(seed)
    if numpy is not None:
        numpy.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        torch.mps.manual_seed(seed)
