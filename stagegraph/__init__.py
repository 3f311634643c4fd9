"""stagegraph: a declarative dataflow graph compiler for multi-stage PyTorch training experiments.

``import stagegraph`` does not import torch; ``Runner``, ``run``, ``callbacks`` and ``optimizer``
load the runtime on first use (``Runner`` and ``run`` import torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stagegraph.compiler import (
    Diagnostic,
    ExecutionPlan,
    Explanation,
    Severity,
    compile,
    explain,
    verify,
)
from stagegraph.graph import (
    BatchHandler,
    Callback,
    CallbackNode,
    CallbackOrder,
    CallbackScope,
    Event,
    Experiment,
    LoaderKind,
    RankKind,
    SupervisedHandler,
    handler,
)

if TYPE_CHECKING:
    from stagegraph import callbacks
    from stagegraph.runtime import Runner, run
    from stagegraph.runtime.optim import optimizer

__version__ = "0.1.0"

_LAZY = {"Runner": "stagegraph.runtime", "run": "stagegraph.runtime",
         "callbacks": "stagegraph.callbacks", "optimizer": "stagegraph.runtime.optim"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if name == "callbacks" else getattr(module, name)
    raise AttributeError(f"module 'stagegraph' has no attribute {name!r}")


__all__ = [
    "BatchHandler",
    "Callback",
    "CallbackNode",
    "CallbackOrder",
    "CallbackScope",
    "Diagnostic",
    "Event",
    "ExecutionPlan",
    "Experiment",
    "Explanation",
    "LoaderKind",
    "RankKind",
    "Runner",
    "Severity",
    "SupervisedHandler",
    "callbacks",
    "compile",
    "explain",
    "handler",
    "optimizer",
    "run",
    "verify",
]
