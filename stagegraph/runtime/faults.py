"""Run-time failures explained: what a raw error inside a run means, and how to fix it.

The runner calls :func:`explain` only once a run has failed, so none of this costs anything per
batch. It recognises a callback reading a batch metric, output or batch key that the plan says a
callback of the stage writes (too late: the writer runs after the reader), a callback or batch
handler reading a key the model's output or the batch does not have (a ``KeyError``), a batch
handler that returned something other than a dict, and a loader that is not iterable; anything
else keeps its own message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stagegraph.compiler.diagnostics import did_you_mean


def explain(err: BaseException, runner: Any, where: Mapping[str, object]) -> str | None:
    """A better description of ``err`` than its own message, or ``None``."""
    callback = where.get("callback")
    reads = _reads(runner, callback) if isinstance(callback, str) else ()
    if "batch" in where and type(err) is KeyError and len(err.args) == 1:
        return (_written_later(err.args[0], runner, callback, where.get("event"))
                or _missing_key(err.args[0], runner, callback, reads))
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


#: The runner's per-batch dicts by key namespace, and how a message names a key in them.
_BATCH_DICTS = (("metric", "batch_metrics", "batch metric"), ("output", "output", "output key"),
                ("batch", "input", "batch key"))


def _written_later(key: object, runner: Any, callback: object, event: object) -> str | None:
    """A key some callback of the stage writes, missing when ``callback`` read it."""
    stage = getattr(runner, "stage", None)
    if not isinstance(key, str) or not isinstance(callback, str) or stage is None:
        return None
    names = [cb.name for cb in stage.callbacks]
    if callback not in names:
        return None
    for namespace, attribute, what in _BATCH_DICTS:
        values = getattr(runner, attribute, None)
        if not isinstance(values, Mapping) or key in values:
            continue
        full = f"{namespace}.{key}"
        writers = [cb for cb in stage.callbacks if cb.name != callback and (
            full in cb.writes or any(a.key == full and a.access == "write" for a in cb.inferred))]
        if writers:
            return _writer_message(full, what, runner, callback, event, names, writers)
    return None


def _writer_message(full: str, what: str, runner: Any, callback: str, event: object,
                    names: list[str], writers: list[Any]) -> str:
    key = full.split(".", 1)[1]
    position = names.index(callback)
    # Ordering helps only a writer that writes in the event the reader failed in.
    later = [cb.name for cb in writers if names.index(cb.name) > position and event in cb.events]
    head = f"KeyError: {key!r}: callback {callback!r} reads {what} {key!r}"
    if later:
        who = _names(later)
        return (f"{head}, which {who} {_verb(later)} in stage {runner.stage_name!r}, but "
                f"{_runs(later)} after {callback!r}; declare reads=[{full!r}] on {callback!r} "
                f"so the compiler orders it after its writer, or fix the order "
                f"(after=[{later[0]!r}] on {callback!r})")
    earlier = [cb.name for cb in writers]
    events = sorted({e for cb in writers for e in cb.events})
    return (f"{head}, which {_names(earlier)} {_verb(earlier)} in stage "
            f"{runner.stage_name!r} (in {', '.join(events) or 'its events'}), but had not "
            f"written yet when {callback!r} read it in {event or 'an event'} on loader "
            f"{runner.loader_name!r}; read it in a later event, or make the writer write it "
            "for every batch of this loader")


def _names(names: list[str]) -> str:
    quoted = ", ".join(repr(n) for n in names)
    return f"callback {quoted}" if len(names) == 1 else f"callbacks {quoted}"


def _verb(names: list[str]) -> str:
    return "writes" if len(names) == 1 else "write"


def _runs(names: list[str]) -> str:
    return "it runs" if len(names) == 1 else "they run"


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
        # The batch metrics the stage writes (the plan knows them), not only those written so
        # far in this batch: the reader may run before their writers.
        stage = getattr(runner, "stage", None)
        metrics = [*getattr(getattr(stage, "metrics", None), "batch", ()),
                   *(getattr(runner, "batch_metrics", None) or {})]
        metrics = list(dict.fromkeys(map(str, metrics)))
        near = did_you_mean(key, [*metrics, *map(str, output or ()), *map(str, batch or ())])
        return (f"KeyError: {key!r}: callback {callback!r} reads key {key!r}, which none of the "
                f"batch metrics (keys {_keys(metrics)}), the batch handler's output (keys "
                f"{_keys(output)}) and the batch (keys {_keys(batch)}) has.{near} Point the "
                f"callback at an existing key, or make a callback, the handler or the loader "
                f"provide {key!r}")
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
