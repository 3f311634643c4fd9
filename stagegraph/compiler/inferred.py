"""What a callback's code shows, set beside what it declares (part of the schema pass).

The accesses `inference.infer_accesses` finds in a callback class's source join the instance's
declared ``reads`` / ``writes`` where the declarations do not already state them, so ordering and
the checks treat them like declared keys; each addition stays listed in ``CallbackPlan.inferred``
with its ``file:line``, which edge reasons and messages quote. A key the code both reads and
writes counts as written only (no callback depends on itself); a read the code may do without
(``optional``) orders callbacks, but the checks do not require its key. Code that contradicts
non-empty declarations is reported (SF517): a key in a namespace the callback declares keys in
that the declarations do not cover, or a key written that is declared only as read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.inference import infer_accesses
from stagegraph.compiler.keys import matches, namespace
from stagegraph.compiler.plan import CallbackPlan, InferredAccess

Keys = tuple[str, ...]


def merge_inferred(cls: type, reads: Keys, writes: Keys, diags: Diagnostics, **where: str
                   ) -> tuple[Keys, Keys, tuple[InferredAccess, ...]]:
    """``reads`` and ``writes`` plus the keys the code of ``cls`` adds, and those additions.

    ``where`` locates SF517 diagnostics (``stage=..., callback=...``).
    """
    try:
        merged = _merged(cls, reads, writes)
    except TypeError:  # an unhashable class: merge it uncached
        merged = _merged.__wrapped__(cls, reads, writes)
    for key, message, hint in merged.problems:
        diags.warning("SF517", message, hint, key=key, **where)
    return merged.reads, merged.writes, merged.added


@dataclass(frozen=True)
class _Merged:
    reads: Keys
    writes: Keys
    added: tuple[InferredAccess, ...]
    problems: tuple[tuple[str, str, str], ...]  # SF517: key, message, hint


@functools.lru_cache(maxsize=4096)
def _merged(cls: type, reads: Keys, writes: Keys) -> _Merged:
    """The merge for one class and one set of declarations (entries of a class repeat them)."""
    accesses = infer_accesses(cls)
    if not accesses:
        return _Merged(reads, writes, (), ())
    first: dict[tuple[str, str], InferredAccess] = {}  # the first access, unless optional
    events: dict[tuple[str, str], dict[str, None]] = {}  # every method with that access
    for access in accesses:
        seen = first.setdefault((access.key, access.access), access)
        if seen.optional and not access.optional:
            first[(access.key, access.access)] = access
        events.setdefault((access.key, access.access), {})[access.event or "?"] = None
    first = {k: a.model_copy(update={"events": tuple(events[k])}) for k, a in first.items()}
    written = {key for key, kind in first if kind == "write"}
    added: list[InferredAccess] = []
    problems = []
    for (key, kind), access in first.items():
        if kind == "write":
            new = not covers(writes, key)
        else:
            new = key not in written and not covers(writes, key) and not covers(reads, key)
        if new:
            added.append(access)
            problem = _contradiction(access, reads, writes)
            if problem is not None:
                problems.append(problem)
    return _Merged(
        (*reads, *(a.key for a in added if a.access == "read")),
        (*writes, *(a.key for a in added if a.access == "write")),
        tuple(added),
        tuple(problems),
    )


def covers(declared: Keys, key: str) -> bool:
    """Whether a declared key states ``key``. One with a placeholder
    (``valid_metric.{main_metric}``) may stand for any key of its namespace: it covers them all."""
    return any(matches(d, key) or ("{" in d and namespace(d) == namespace(key))
               for d in declared)


def _contradiction(access: InferredAccess, reads: Keys, writes: Keys
                   ) -> tuple[str, str, str] | None:
    """SF517's (key, message, hint) when the declarations speak of the access's namespace and
    contradict it (an optional read requires nothing, so it contradicts nothing)."""
    if access.access == "read" and access.optional:
        return None
    key, space = access.key, namespace(access.key)
    field = "reads" if access.access == "read" else "writes"
    seen = f"its code {field} {key!r} ({access.where}, in {access.event})"
    if access.access == "write" and covers(reads, key):
        return (key, f"{seen}, which it declares only as read",
                f"add {key!r} to writes=[...] as well, or stop writing it")
    # Declaring what it writes in a namespace says nothing about what it reads there.
    same_kind = reads if access.access == "read" else writes
    declared = [d for d in same_kind if namespace(d) == space]
    if not declared:
        return None
    listed = ", ".join(map(repr, declared))
    return (key, f"{seen}, which its declarations ({listed}) do not list."
            + did_you_mean(key, declared),
            f"add {key!r} to {field}=[...], or fix the key in the code")


def inferred(callback: CallbackPlan, key: str, access: str) -> InferredAccess | None:
    """How ``callback``'s code reads or writes ``key``, when only its code does."""
    for found in callback.inferred:
        if found.key == key and found.access == access:
            return found
    return None


def inferred_at(callback: CallbackPlan, key: str, access: str) -> str | None:
    """``file:line`` where ``callback``'s code reads or writes ``key``, when only its code does."""
    found = inferred(callback, key, access) if callback.inferred else None
    return None if found is None else found.where


def source_note(where: str | None) -> str:
    """`` (inferred from source, file.py:14)``, or nothing for a declared key."""
    return "" if where is None else f" (inferred from source, {where})"
