"""Run-time failures explained: what a raw error inside a run means, and how to fix it.

The runner calls :func:`explain` only once a run has failed, so none of this costs anything per
batch. It recognises a callback or batch handler reading a key the model's output or the batch
does not have (a ``KeyError``), a batch handler that returned something other than a dict, and a
loader that is not iterable; anything else keeps its own message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def explain(err: BaseException, runner: Any, where: Mapping[str, object]) -> str | None:
    """A better description of ``err`` than its own message, or ``None``."""
    callback = where.get("callback")
    reads = _reads(runner, callback) if isinstance(callback, str) else ()
    if "batch" in where and type(err) is KeyError and len(err.args) == 1:
        return _missing_key(err.args[0], runner, callback, reads)
    if "batch" in where and isinstance(err, (TypeError, IndexError)) and isinstance(callback, str):
        return _not_a_mapping(runner, callback, reads)
    if "batch" in where and callback is None and isinstance(err, (TypeError, AttributeError)):
        return _not_tensors(err, runner)
    if "loader" in where and "batch" not in where and isinstance(err, TypeError):
        return _not_iterable(runner, where["loader"])
    return None


def _reads(runner: Any, callback: str) -> tuple[str, ...]:
    stage = getattr(runner, "stage", None)
    try:
        return tuple(stage.callback(callback).reads) if stage is not None else ()
    except KeyError:
        return ()


def _missing_key(key: object, runner: Any, callback: object, reads: tuple[str, ...]
                 ) -> str | None:
    if not isinstance(key, str):
        return None
    output, batch = runner.output, runner.input
    lacks_output = isinstance(output, Mapping) and key not in output
    lacks_batch = isinstance(batch, Mapping) and key not in batch
    if callback is None and lacks_batch:
        return (f"KeyError: {key!r}: the batch handler reads batch key {key!r}, but loader "
                f"{runner.loader_name!r} yields batches with the keys {_keys(batch)}; rename the "
                "key in the loader's batches, or tell the handler its keys "
                "(SupervisedHandler(input_key=..., target_key=...), tuple_keys=... for tuples)")
    if callback is None:
        return None
    declared = {k.split(".", 1)[0] for k in reads if k.split(".", 1)[-1] == key}
    if lacks_output and lacks_batch and not declared:
        return (f"KeyError: {key!r}: callback {callback!r} reads key {key!r}, which neither the "
                f"batch handler's output (keys {_keys(output)}) nor the batch (keys "
                f"{_keys(batch)}) has; point the callback at an existing key, or make the "
                f"handler or the loader provide {key!r}")
    in_batch = "batch" in declared and lacks_batch
    if lacks_output and not in_batch:
        return (f"KeyError: {key!r}: callback {callback!r} reads output key {key!r}, but the "
                f"batch handler's output has the keys {_keys(output)}; make the handler write "
                f"{key!r}, or point the callback at one of those keys")
    if lacks_batch:
        return (f"KeyError: {key!r}: callback {callback!r} reads batch key {key!r}, but loader "
                f"{runner.loader_name!r} yields batches with the keys {_keys(batch)}; point the "
                "callback at one of those keys, or add the key to the loader's batches")
    return None


def _not_a_mapping(runner: Any, callback: str, reads: tuple[str, ...]) -> str | None:
    output = runner.output
    wanted = [k.split(".", 1)[1] for k in reads if k.startswith("output.")]
    if not wanted or output is None or isinstance(output, Mapping):
        return None
    return (f"callback {callback!r} reads output key(s) {_keys(wanted)}, but the batch handler "
            f"returned {type(output).__name__}, not a dict; return a dict such as "
            f"{{{wanted[0]!r}: ...}} from the handler")


def _not_tensors(err: BaseException, runner: Any) -> str | None:
    batch = runner.input
    items = batch.items() if isinstance(batch, Mapping) else (
        enumerate(batch) if isinstance(batch, (list, tuple)) else [("batch", batch)])
    odd = [f"{k!r} ({type(v).__name__})" for k, v in items
           if not hasattr(v, "shape") and not isinstance(v, (Mapping, list, tuple))]
    if not odd:
        return None
    return (f"{type(err).__name__}: {err} — the batch handler failed on a batch from loader "
            f"{runner.loader_name!r} whose values are not tensors: {', '.join(odd[:6])}; make the "
            "loader yield tensors (a dict of tensors, or a tuple such as (features, targets) as "
            "a DataLoader over a TensorDataset does), or give the stage a batch handler for "
            "this data")


def _not_iterable(runner: Any, loader: object) -> str | None:
    value = (runner.loaders or {}).get(loader)
    kind = type(value)
    if value is None or hasattr(kind, "__iter__") or hasattr(kind, "__getitem__"):
        return None
    return (f"loader {loader!r} is {kind.__name__}, which is not iterable; a loader is a "
            "DataLoader or any iterable of batches, or a function returning one")


def _keys(keys: Any) -> str:
    names = [str(k) for k in keys]
    shown = ", ".join(repr(n) for n in names[:12])
    return f"[{shown}{', ...' if len(names) > 12 else ''}]"
