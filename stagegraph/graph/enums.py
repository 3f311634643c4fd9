"""The closed vocabulary of stagegraph: events, order buckets, nodes, scopes and loader kinds."""

from __future__ import annotations

from enum import Enum, IntEnum


class Event(str, Enum):
    """The events a runner fires, in the order a run meets them."""

    experiment_start = "on_experiment_start"
    stage_start = "on_stage_start"
    epoch_start = "on_epoch_start"
    loader_start = "on_loader_start"
    batch_start = "on_batch_start"
    batch_end = "on_batch_end"
    loader_end = "on_loader_end"
    epoch_end = "on_epoch_end"
    stage_end = "on_stage_end"
    experiment_end = "on_experiment_end"
    exception = "on_exception"

    def __str__(self) -> str:
        return self.value


EVENT_METHODS: tuple[str, ...] = tuple(e.value for e in Event)


class CallbackOrder(IntEnum):
    """Order buckets, as in the seed runner: a tie-break after hard edges. Any int is allowed."""

    Internal = 0
    Metric = 20
    MetricAggregation = 40
    Optimizer = 60
    Validation = 80
    Scheduler = 100
    Logging = 120
    External = 200


class CallbackNode(str, Enum):
    """Which processes of a distributed run execute a callback.

    Catalyst's capitalised spellings are aliases of the same members, so a callback written for
    Catalyst works unchanged; plans show the canonical lower-case value.

    >>> CallbackNode.Master is CallbackNode.master
    True
    """

    all = "all"
    master = "master"
    worker = "worker"
    All = "all"
    Master = "master"
    Worker = "worker"


class CallbackScope(str, Enum):
    """`experiment`-scoped callbacks migrate to the following stages; `stage` ones do not.

    ``CallbackScope.Experiment`` and ``CallbackScope.Stage`` (Catalyst's spellings) are aliases.
    """

    stage = "stage"
    experiment = "experiment"
    Stage = "stage"
    Experiment = "experiment"


class RankKind(str, Enum):
    """The kind of process a plan is compiled for."""

    single = "single"
    master = "master"
    worker = "worker"


class LoaderKind(str, Enum):
    """What a loader does, from its name's prefix."""

    train = "train"
    valid = "valid"
    infer = "infer"
    unknown = "unknown"

    @classmethod
    def of(cls, loader_name: str) -> LoaderKind:
        for kind in (cls.train, cls.valid, cls.infer):
            if loader_name.startswith(kind.value):
                return kind
        return cls.unknown


INFER_STAGE_PREFIX = "infer"


def is_infer_stage(stage_name: str) -> bool:
    """A stage whose name starts with ``infer`` is an inference stage (the seed's rule)."""
    return stage_name.startswith(INFER_STAGE_PREFIX)


def bucket_name(order: int) -> str:
    """``'Metric (20)'`` for a known bucket, ``'25'`` for any other int."""
    try:
        return f"{CallbackOrder(order).name} ({order})"
    except ValueError:
        return str(order)
