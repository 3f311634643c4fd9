"""Deterministic runs: torch's and cuDNN's flags and cuBLAS's workspace setting for the length
of a run (``Experiment(deterministic=True)``), restored afterwards."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from stagegraph.runtime.errors import StagegraphWarning

#: The environment variable cuBLAS reads (once, when CUDA initialises) and the value that makes
#: its reductions deterministic on CUDA 10.2 and later.
CUBLAS_VARIABLE = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_VALUE = ":4096:8"


@dataclass(frozen=True)
class Flags:
    """The settings a deterministic run changes, as they were before it."""

    algorithms: bool
    warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    cublas: str | None

    @staticmethod
    def current() -> Flags:
        return Flags(torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled(),
                     bool(torch.backends.cudnn.deterministic),
                     bool(torch.backends.cudnn.benchmark), os.environ.get(CUBLAS_VARIABLE))

    def apply(self) -> None:
        torch.use_deterministic_algorithms(self.algorithms, warn_only=self.warn_only)
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        if self.cublas is None:
            os.environ.pop(CUBLAS_VARIABLE, None)
        else:
            os.environ[CUBLAS_VARIABLE] = self.cublas


DETERMINISTIC = Flags(algorithms=True, warn_only=False, cudnn_deterministic=True,
                      cudnn_benchmark=False, cublas=CUBLAS_VALUE)


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Within the block, with ``enabled``: ``torch.use_deterministic_algorithms(True)``,
    ``cudnn.deterministic=True``, ``cudnn.benchmark=False`` and ``CUBLAS_WORKSPACE_CONFIG``
    (kept if already set); everything as it was afterwards. Without ``enabled``: nothing.

    cuBLAS reads its variable when CUDA initialises: if CUDA is already initialised and the
    variable was not set, a warning says to set it before the process starts.
    """
    if not enabled:
        yield
        return
    before = Flags.current()
    if before.cublas is None and torch.cuda.is_initialized():
        warnings.warn(StagegraphWarning(
            f"deterministic=True: CUDA was initialised before the run, so cuBLAS did not see "
            f"{CUBLAS_VARIABLE}={CUBLAS_VALUE} and may not be deterministic; set it before "
            f"starting Python (`{CUBLAS_VARIABLE}={CUBLAS_VALUE} stagegraph run ...`)"),
            stacklevel=3)
    wanted = DETERMINISTIC if before.cublas is None else Flags(
        **{**DETERMINISTIC.__dict__, "cublas": before.cublas})
    wanted.apply()
    try:
        yield
    finally:
        before.apply()
