"""Plan diff: what changed between two plans, as located, readable changes.

Resuming checks that the plan being run is the plan a checkpoint was written by; when the hashes
differ this says how (a stage added, a callback removed, ``num_epochs`` 5 -> 8). Both plans are
taken in their JSON form (``plan.model_dump(mode="json")``, or the JSON text a checkpoint keeps),
so a plan saved by an older run compares as well as a live one.

What cannot change a run's result is left out: the ``logdir`` path (a run folder may be moved),
``verbose`` and the console logger it adds, diagnostics, the hash, and the source lines quoted for
keys inferred from a callback's code (an edit above a line moves it). Plans for different ranks
of one distributed run (``rank`` master and worker: only the master writes checkpoints, every
rank resumes from them) are compared on the callbacks every rank runs (``node`` all).

>>> old = {"seed": 1, "stages": [{"name": "train", "num_epochs": 2}]}
>>> new = {"seed": 1, "stages": [{"name": "train", "num_epochs": 3}]}
>>> [str(change) for change in plan_changes(old, new)]
["stage 'train' > param 'num_epochs': changed from 2 to 3"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stagegraph.compiler.diagnostics import Location
from stagegraph.compiler.metrics import DERIVES

#: Plan fields that never change what a run computes.
IGNORED = frozenset({"hash", "diagnostics", "logdir", "verbose", "rank", "stages",
                     "stage_edges"})
#: Stage fields compared as a whole elsewhere, or derived from what is compared.
STAGE_DERIVED = frozenset({"name", "index", "callbacks", "loaders", "dispatch", "edges",
                           "inversions", "migrations", "metrics"})
#: Edge fields that only word the edge (its reason quotes source lines); the rest define it.
EDGE_WORDING = frozenset({"reason", "inferred"})
#: Callbacks that only print: present or not with ``verbose``.
QUIET_KINDS = frozenset({"console"})
#: Plan fields added since the plan format's version 1, with the value a plan saved without
#: them ran with (so resuming a checkpoint an older stagegraph wrote compares them as equal).
ADDED_FIELDS: Mapping[str, Any] = {"deterministic": False}


@dataclass(frozen=True)
class Change:
    """One difference: where it is and what it is."""

    location: Location
    text: str

    def __str__(self) -> str:
        return f"{self.location}: {self.text}"


def plan_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    """Every difference from ``saved`` to ``current`` that can change what a run computes."""
    saved = {**{k: v for k, v in ADDED_FIELDS.items() if k in current}, **saved}
    changes = _fields(saved, current, IGNORED, Location())
    both = ({s["name"] for s in saved.get("stages", ())}
            & {s["name"] for s in current.get("stages", ())})
    old_edges, new_edges = ({(e["source"], e["target"]) for e in plan.get("stage_edges", ())
                             if e["source"] in both and e["target"] in both}
                            for plan in (saved, current))  # an added stage brings its edges
    for source, target in sorted(new_edges - old_edges):
        changes.append(Change(Location(), f"stage edge {source} -> {target} added"))
    for source, target in sorted(old_edges - new_edges):
        changes.append(Change(Location(), f"stage edge {source} -> {target} removed"))
    if saved.get("rank", "single") != current.get("rank", "single"):
        saved, current = _every_rank(saved), _every_rank(current)
    return changes + _stages(saved.get("stages", ()), current.get("stages", ()))


def _stages(saved: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
            ) -> list[Change]:
    old = {s["name"]: s for s in saved}
    new = {s["name"]: s for s in current}
    changes = [Change(Location(stage=n), "stage added") for n in new if n not in old]
    changes += [Change(Location(stage=n), "stage removed") for n in old if n not in new]
    common_old = [n for n in old if n in new]
    common_new = [n for n in new if n in old]
    if common_old != common_new:
        changes.append(Change(Location(), f"stage order changed from {_names(common_old)} to "
                                          f"{_names(common_new)}"))
    for name in common_new:
        changes += _stage(old[name], new[name])
    return changes


def _stage(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    where = Location(stage=saved["name"])
    changes = _fields(saved, current, STAGE_DERIVED, where)
    old_loaders = [loader["name"] for loader in saved.get("loaders", ())]
    new_loaders = [loader["name"] for loader in current.get("loaders", ())]
    if old_loaders != new_loaders:
        changes.append(Change(Location(stage=where.stage, param="loaders"),
                              f"changed from {_names(old_loaders)} to {_names(new_loaders)}"))
    changes += _callbacks(where.stage or "", _audible(saved), _audible(current))
    if not changes and _derived(saved) != _derived(current):
        changes.append(Change(where, "callback ordering edges, dispatch tables or derived "
                                     "metrics changed"))
    return changes


def _callbacks(stage: str, saved: list[Mapping[str, Any]], current: list[Mapping[str, Any]]
               ) -> list[Change]:
    old = {cb["name"]: cb for cb in saved}
    new = {cb["name"]: cb for cb in current}
    changes = [Change(Location(stage=stage, callback=n), f"callback added ({new[n]['type']})")
               for n in new if n not in old]
    changes += [Change(Location(stage=stage, callback=n), f"callback removed ({old[n]['type']})")
                for n in old if n not in new]
    for name in (n for n in new if n in old):
        # The metric flow derives the aggregation's and validation's writes from the others.
        skip = {"name", "writes"} if new[name].get("kind") in DERIVES else {"name"}
        changes += _fields(_unplaced(old[name]), _unplaced(new[name]), skip,
                           Location(stage=stage, callback=name))
    common_old = [n for n in old if n in new]
    common_new = [n for n in new if n in old]
    if common_old != common_new:
        changes.append(Change(Location(stage=stage), f"callback order changed from "
                                                     f"{_names(common_old)} to "
                                                     f"{_names(common_new)}"))
    return changes


def _fields(saved: Mapping[str, Any], current: Mapping[str, Any], skip: frozenset[str] | set[str],
            where: Location) -> list[Change]:
    """A change per differing field, down to the nested key or list item that differs
    (``param 'params.patience'``), each showing what differs in full."""
    changes = []
    for key in dict.fromkeys([*saved, *current]):
        if key in skip or saved.get(key) == current.get(key):
            continue
        for path, text in _value_changes(saved.get(key), current.get(key), (str(key),)):
            location = Location(**{**where.model_dump(exclude_none=True),
                                   "param": _dotted(path)})
            changes.append(Change(location, text))
    return changes


def _every_rank(plan: Mapping[str, Any]) -> dict[str, Any]:
    """``plan`` without the callbacks only some ranks run (and their table and edge entries)."""
    stages = []
    for stage in plan.get("stages", ()):
        some = {cb["name"] for cb in stage.get("callbacks", ()) if cb.get("node", "all") != "all"}
        stages.append({
            **stage,
            "callbacks": [cb for cb in stage.get("callbacks", ()) if cb["name"] not in some],
            "dispatch": {event: [n for n in names if n not in some]
                         for event, names in stage.get("dispatch", {}).items()},
            **{key: [e for e in stage.get(key, ()) if e["source"] not in some
                     and e["target"] not in some] for key in ("edges", "inversions")},
        })
    return {**plan, "stages": stages}


def _unplaced(callback: Mapping[str, Any]) -> Mapping[str, Any]:
    """The callback without the source lines of its inferred keys (an edit above them moves
    them, and changes nothing a run computes)."""
    inferred = callback.get("inferred")
    if not inferred:
        return callback
    return {**callback, "inferred": [{k: v for k, v in a.items() if k != "where"}
                                     for a in inferred]}


def _audible(stage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [cb for cb in stage.get("callbacks", ()) if not _quiet(cb)]


def _quiet(callback: Mapping[str, Any]) -> bool:
    return callback.get("origin") == "default" and callback.get("kind") in QUIET_KINDS


def _derived(stage: Mapping[str, Any]) -> Any:
    """Dispatch tables, edges and derived metrics without the quiet callbacks."""
    quiet = {cb["name"] for cb in stage.get("callbacks", ()) if _quiet(cb)}
    dispatch = {event: [n for n in names if n not in quiet]
                for event, names in stage.get("dispatch", {}).items()}
    edges = [{k: v for k, v in e.items() if k not in EDGE_WORDING}
             for key in ("edges", "inversions") for e in stage.get(key, ())
             if e["source"] not in quiet and e["target"] not in quiet]
    derived = [cb.get("writes") for cb in stage.get("callbacks", ())
               if cb.get("kind") in DERIVES]
    return ({k: v for k, v in dispatch.items() if v}, edges, stage.get("migrations"),
            stage.get("metrics"), derived)


def _names(names: Sequence[str]) -> str:
    return "[" + ", ".join(repr(n) for n in names) + "]"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pair(saved: Any, current: Any, limit: int = 60, context: int = 10, most: int = 400
          ) -> tuple[str, str]:
    """Both values as text that shows where they differ: short values whole; long ones with
    their common start and end elided around the differing middle (up to ``most`` characters).

    >>> words = [str(n) for n in range(40)]
    >>> _pair(" ".join(words), " ".join(words).replace(" 17 ", " seventeen "))
    ('...15 16 17 18 19...', '...15 16 seventeen 18 19...')
    """
    old, new = repr(saved), repr(current)
    if len(old) <= limit and len(new) <= limit:
        return old, new
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    return (_middle(old, start, end, context, most), _middle(new, start, end, context, most))


def _middle(text: str, start: int, end: int, context: int, most: int) -> str:
    """``text`` from about ``context`` characters before ``start`` to as many after its last
    ``end`` characters, cut at spaces; elided parts are ``...``."""
    begin = text.rfind(" ", 0, max(0, start - context)) + 1
    after = text.find(" ", len(text) - end + context)
    stop = len(text) if after < 0 else after
    middle = text[begin:stop]
    if len(middle) > most:
        middle = f"{middle[:most]}...({len(middle) - most} more characters)"
    return ("..." if begin > 0 else "") + middle + ("..." if stop < len(text) else "")


def _changed(saved: Any, current: Any) -> str:
    old, new = _pair(saved, current)
    text = f"changed from {old} to {new}"
    if isinstance(saved, list) and isinstance(current, list) and len(text) > 80:
        added = [item for item in current if item not in saved]
        removed = [item for item in saved if item not in current]
        said = [f"added {_short(added)}" if added else "", f"removed {_short(removed)}"
                if removed else ""]
        text += f" ({'; '.join(filter(None, said))})" if any(said) else " (reordered)"
    return text


def _dotted(path: tuple[str, ...]) -> str:
    """``("params", "[0]", "lr")`` as ``params[0].lr``."""
    return "".join(part if part.startswith("[") or not i else f".{part}"
                   for i, part in enumerate(path))


def config_changes(saved: Any, current: Any) -> list[Change]:
    """Every difference between two effective config files (`stagegraph.config`), each named by
    its keys: ``stage 'train' > param 'optimizer.lr': changed from 0.001 to 0.0001``.

    >>> [str(c) for c in config_changes({"seed": 1, "stages": {"a": {"num_epochs": 2}}},
    ...                                  {"seed": 1, "stages": {"a": {"num_epochs": 3}}})]
    ["stage 'a' > param 'num_epochs': changed from 2 to 3"]
    """
    return [Change(_config_location(path), text) for path, text in _value_changes(saved, current,
                                                                                     ())]


def _value_changes(saved: Any, current: Any, path: tuple[str, ...]
                   ) -> list[tuple[tuple[str, ...], str]]:
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        found = []
        for key in dict.fromkeys([*saved, *current]):
            here = (*path, str(key))
            if key not in current:
                found.append((here, f"removed (was {_pair(saved[key], None)[0]})"))
            elif key not in saved:
                found.append((here, f"added ({_pair(None, current[key])[1]})"))
            else:
                found += _value_changes(saved[key], current[key], here)
        return found
    if saved == current and isinstance(saved, bool) == isinstance(current, bool):
        return []
    if (isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current)
            and any(isinstance(item, (Mapping, list)) for item in [*saved, *current])):
        return [found for index, (old, new) in enumerate(zip(saved, current, strict=True))
                for found in _value_changes(old, new, (*path, f"[{index}]"))]
    return [(path, _changed(saved, current))]


def _config_location(path: tuple[str, ...]) -> Location:
    if len(path) >= 2 and path[0] == "stages":
        rest = ".".join(path[2:])
        return Location(stage=path[1], param=rest or None)
    return Location(param=".".join(path) or None)
