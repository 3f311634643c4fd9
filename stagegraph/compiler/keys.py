"""Dataflow keys: ``namespace.name``, where ``namespace.*`` stands for the whole namespace."""

from __future__ import annotations

import re
from collections.abc import Callable

KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.(\*|[^\s*][^\s]*)$")

#: Namespaces and who fills them, for messages.
NAMESPACES = {
    "batch": "the loader's batch",
    "output": "the batch handler (the model's forward pass)",
    "metric": "batch metrics, written by callbacks",
    "loader_metric": "metrics aggregated over a loader",
    "epoch_metric": "metrics of the epoch, as '{loader}_{metric}'",
    "valid_metric": "the validation manager: the valid loader's epoch metrics, by metric name",
    "valid": "the validation manager (valid metrics, best so far)",
    "state": "runner state such as early stop requests",
}


def is_valid_key(key: object) -> bool:
    return isinstance(key, str) and KEY_PATTERN.match(key) is not None


def namespace(key: str) -> str:
    return key.split(".", 1)[0]


def provided_by(sources: list[str]) -> Callable[[str], bool]:
    """A test for "some key in ``sources`` provides this read" (`matches`, precomputed)."""
    exact = set(sources)
    whole = {namespace(k) for k in sources if k.endswith(".*")}
    return lambda read: read in exact or namespace(read) in whole or (
        read.endswith(".*") and any(namespace(k) == namespace(read) for k in exact))


def matches(written: str, read: str) -> bool:
    """Whether writing ``written`` provides ``read`` (either side may be ``ns.*``)."""
    if written == read:
        return True
    w_ns, w_name = written.split(".", 1)
    r_ns, r_name = read.split(".", 1)
    return w_ns == r_ns and (w_name == "*" or r_name == "*")
