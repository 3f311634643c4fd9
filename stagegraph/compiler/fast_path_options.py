"""A stage's ``fast_path=``: whether each of its loaders may take the batch fast path (SF531).

``fast_path`` is ``True`` or ``False`` for every loader of the stage, or a mapping
``{loader_name: bool}`` that sets the loaders it names; the loaders it does not name take the
experiment's ``fast_path``. Every name in the mapping must be a loader of the stage: a misspelt
name would silently leave the fast path on for the loader meant, so it is an error (SF531) with
a did-you-mean hint. The runtime still decides per loader whether the fast path *applies*
(`stagegraph.runtime.fastpath.decide`); this only says whether it is allowed.

>>> from stagegraph.compiler.diagnostics import Diagnostics
>>> diags = Diagnostics()
>>> fast_path_plan({"valdi": False}, True, ("train", "valid"), diags, stage="train")
(True, {'train': True, 'valid': True})
>>> print(diags.items[0].message)
fast_path names 'valdi', which is not a loader of stage 'train'. Did you mean 'valid'?
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean

HINT = ("fast_path is True, False, or a mapping of loader names to True / False, "
        "e.g. fast_path={'valid': False}")


def experiment_fast_path(value: Any, diags: Diagnostics) -> bool:
    """The experiment's ``fast_path``, a bool (SF101 otherwise: a mapping per loader belongs to
    a stage, whose loaders it names)."""
    if isinstance(value, bool):
        return value
    diags.error("SF101", f"invalid value {value!r} for the experiment's 'fast_path': it is not "
                "True or False", "Experiment(fast_path=...) is True or False; a mapping per "
                "loader goes to add_stage(fast_path={'valid': False})", param="fast_path")
    return True


def fast_path_plan(value: Any, default: Any, loaders: Iterable[str], diags: Diagnostics,
                   *, stage: str) -> tuple[bool, dict[str, bool]]:
    """The stage's own setting (``default``, the experiment's, for a mapping) and, per loader of
    ``loaders``, whether it may take the fast path. Problems are SF101 (not a bool or a mapping
    of bools) and SF531 (a name that is no loader of the stage); a bad entry is left out. A bad
    ``default`` is reported once, by `experiment_fast_path`, not again where a stage took it."""
    names = tuple(loaders)
    fallback = default if isinstance(default, bool) else True
    if value is default and not isinstance(value, bool):
        value = fallback
    if isinstance(value, bool):
        return value, dict.fromkeys(names, value)
    if not isinstance(value, Mapping):
        diags.error("SF101", f"invalid value {value!r} for 'fast_path': it is not True, False "
                    "or a mapping of loader names", HINT, stage=stage, param="fast_path")
        return fallback, dict.fromkeys(names, fallback)
    per_loader = dict.fromkeys(names, fallback)
    for name, setting in value.items():
        if not isinstance(setting, bool):
            diags.error("SF101", f"invalid value {setting!r} for fast_path[{name!r}]: it is not "
                        "True or False", HINT, stage=stage, param="fast_path")
        elif name not in per_loader:
            _unknown(name, names, diags, stage)
        else:
            per_loader[name] = setting
    return fallback, per_loader


def _unknown(name: object, names: tuple[str, ...], diags: Diagnostics, stage: str) -> None:
    known = ", ".join(map(repr, names)) or "none"
    where = {"loader": name} if isinstance(name, str) else {}
    diags.error("SF531", f"fast_path names {name!r}, which is not a loader of stage {stage!r}."
                + did_you_mean(name, names), f"the stage's loaders are: {known}",
                stage=stage, param="fast_path", **where)
