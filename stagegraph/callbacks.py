"""The built-in callbacks under a short import path: ``from stagegraph.callbacks import ...``.

The same classes as `stagegraph.runtime.callbacks`, looked up there on first use (so, as there,
importing this module does not import torch; ``CheckpointCallback`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stagegraph.runtime import callbacks as _builtins
from stagegraph.runtime.callbacks import __all__

if TYPE_CHECKING:
    from stagegraph.runtime.callbacks import *  # noqa: F403


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(_builtins, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
