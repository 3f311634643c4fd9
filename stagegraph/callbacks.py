"""The built-in callbacks under a short import path: ``from stagegraph.callbacks import ...``.

The same classes as `stagegraph.runtime.callbacks` (importing this module imports torch).
"""

from __future__ import annotations

from stagegraph.runtime.callbacks import *  # noqa: F403
from stagegraph.runtime.callbacks import __all__  # noqa: F401
