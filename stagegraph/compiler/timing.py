"""Reads too early in the batch: code that reads a batch's metric or output before anything of
that batch can have written it (SF521).

The runner empties ``batch_metrics`` before ``on_batch_start`` and sets ``output`` only after it,
from the batch handler; so a read of ``runner.batch_metrics["loss"]`` or ``runner.output[...]`` in
``on_batch_start`` finds nothing (or the previous batch's output) unless a callback of the stage
writes that key in ``on_batch_start`` too. Only reads known from code are checked: they carry the
event they happen in.
"""

from __future__ import annotations

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.inferred import inferred
from stagegraph.compiler.plan import CallbackPlan, StagePlan

#: Namespaces filled during a batch, after ``on_batch_start``: by callbacks' ``on_batch_end`` and
#: by the batch handler.
_FILLED_LATER = {"metric": "the batch metrics are emptied before on_batch_start",
                 "output": "the batch handler sets runner.output after on_batch_start (it still "
                           "holds the previous batch's output)"}
_EVENT = "on_batch_start"


def check_timing(stage: StagePlan, diags: Diagnostics) -> None:
    """Report SF521 for each read in ``on_batch_start`` of a metric or output key that no callback
    of ``stage`` writes in ``on_batch_start``.

    Requires: the stage's callbacks with their inferred accesses.
    Guarantees: adds diagnostics only; an optional read (``.get``, in a branch) is never reported.
    """
    for cb in stage.callbacks:
        for access in cb.inferred:
            space = access.key.split(".", 1)[0]
            if (access.access != "read" or access.optional or space not in _FILLED_LATER
                    or _EVENT not in access.events or _written_at_batch_start(stage, access.key)):
                continue
            name = access.key.split(".", 1)[1]
            diags.error("SF521", f"reads {access.key!r} in {_EVENT} ({access.where}), before "
                        f"anything of the batch writes it: {_FILLED_LATER[space]}",
                        f"read {name!r} in on_batch_end instead (the compiler then orders this "
                        "callback after what writes it)", stage=stage.name, callback=cb.name,
                        key=access.key)


def _written_at_batch_start(stage: StagePlan, key: str) -> bool:
    return any(_writes_at_batch_start(cb, key) for cb in stage.callbacks)


def _writes_at_batch_start(cb: CallbackPlan, key: str) -> bool:
    if key not in cb.writes:
        return False
    found = inferred(cb, key, "write") if cb.inferred else None
    return _EVENT in (found.events if found is not None else cb.events)
