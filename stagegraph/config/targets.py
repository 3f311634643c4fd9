"""What a config's ``_target_`` names, checked from source without importing anything.

``check_target("torch.optim.Adam", ["lr"], search_path=...)`` finds the module file level by
level, reads it with `ast`, follows re-exports to the class, and checks the keyword arguments
against its ``__init__``; each problem comes with a did-you-mean. Whatever cannot be read (a C
extension, a dynamic module ``__getattr__``, a decorator that may change a signature) is not
known and reports nothing. Built-in callbacks may be named by their class name alone
(``AccuracyCallback``); `BUILTIN_CALLBACKS` lists them, read from
``stagegraph/runtime/callbacks/__init__.py``'s ``__all__`` (so nothing of the runtime is imported).
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from stagegraph.config.static_callback import StaticCallback, read_callback
from stagegraph.config.static_class import signature
from stagegraph.config.static_modules import Found, Missing, StaticFinder, finder

#: Where the running stagegraph is found: built-ins are read from it, whatever the search path.
_STAGEGRAPH_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILTIN_MODULE = "stagegraph.runtime.callbacks"


@dataclass(frozen=True)
class TargetProblem:
    """What is wrong with a ``_target_``: ``key`` None is the ``_target_`` value itself, else
    the keyword argument at fault."""

    key: str | None
    message: str
    hint: str


class _Builtins(Mapping[str, str]):
    """Built-in callback class name -> its dotted path, read on first use."""

    @functools.cached_property
    def _paths(self) -> dict[str, str]:
        static = _builtin_finder()
        module = static.module(BUILTIN_MODULE)
        table = None if module is None else static.table(module)
        if module is None or table is None:
            return {}
        paths = {}
        for name in table.exported:
            found = static.member(module, name)
            if isinstance(found, Found) and found.kind == "class":
                paths[name] = f"{BUILTIN_MODULE}.{name}"
        return paths

    def __getitem__(self, name: str) -> str:
        return self._paths[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


#: ``{"AccuracyCallback": "stagegraph.runtime.callbacks.AccuracyCallback", ...}``.
BUILTIN_CALLBACKS: Mapping[str, str] = _Builtins()


def builtin_callback_path(name: str) -> str | None:
    """The dotted path of the built-in callback class ``name``, or None."""
    return BUILTIN_CALLBACKS.get(name)


def check_target(path: str, kwargs: Sequence[str], *, search_path: Sequence[str],
                 positional: int | None = None) -> list[TargetProblem]:
    """Problems with calling ``path`` with the keyword arguments ``kwargs``, read from source.

    ``path`` is ``pkg.module.Name``, ``pkg.module:Name`` or a built-in callback's class name;
    ``search_path`` is where top-level modules are looked for (the config's folder, then
    ``sys.path``). ``positional``: how many positional arguments the caller passes first (1 for
    an optimizer, given the model's parameters); when given, required parameters left without a
    value are problems too — left None, they are not checked. Nothing is imported::

        check_target("torch.optim.Adam", ["lrr"], search_path=sys.path)
        # [TargetProblem(key='lrr', message="torch.optim.Adam does not accept the keyword
        #  argument 'lrr'. Did you mean 'lr'?", hint='its keyword arguments are: params, lr,
        #  ... (torch/optim/adam.py:35)')]
    """
    problem = _malformed(path)
    if problem is not None:
        return [problem]
    static, full = finder(tuple(search_path)), path
    if "." not in path and ":" not in path:
        if path not in BUILTIN_CALLBACKS:
            return [_not_builtin(path)]
        full, static = BUILTIN_CALLBACKS[path], _builtin_finder()
    found = static.resolve(full)
    if isinstance(found, Missing):
        return [_missing(path, found)]
    if not isinstance(found, Found):
        return []
    if found.kind == "module":
        return [TargetProblem(None, f"{path} is a module, not a class or function",
                              f"name a class or function defined in it: {path}.Name")]
    return _arguments(path, found, static, kwargs, positional)


def static_callback(path: str, *, search_path: Sequence[str]) -> StaticCallback | None:
    """The callback class ``path`` (dotted, or a built-in's class name) read with `ast`, without
    importing it; None when ``path`` does not name a class that can be read."""
    static = finder(tuple(search_path))
    if "." not in path and ":" not in path:
        if path not in BUILTIN_CALLBACKS:
            return None
        path, static = BUILTIN_CALLBACKS[path], _builtin_finder()
    found = static.resolve(path)
    return read_callback(found, static) if isinstance(found, Found) else None


def _builtin_finder() -> StaticFinder:
    return finder((_STAGEGRAPH_ROOT,))


def _malformed(path: object) -> TargetProblem | None:
    if isinstance(path, str) and path.count(":") <= 1:
        parts = path.replace(":", ".").split(".")
        if all(part.isidentifier() for part in parts):
            return None
    return TargetProblem(None, f"_target_ {path!r} is not a dotted path such as "
                         "'package.module.Name'",
                         "write the import path of a class or function, e.g. torch.optim.Adam "
                         "or my_module:make_model")


def _not_builtin(name: str) -> TargetProblem:
    return TargetProblem(None, f"{name!r} is not a built-in callback."
                         + did_you_mean(name, BUILTIN_CALLBACKS),
                         "name a class or function by its dotted path (my_module.MyCallback), or "
                         f"a built-in callback: {', '.join(sorted(BUILTIN_CALLBACKS))}")


def _missing(path: str, missing: Missing) -> TargetProblem:
    guess = did_you_mean(missing.name, missing.candidates)
    if not missing.owner:
        return TargetProblem(None, f"no module named {missing.name!r} (in {path}).{guess}",
                             "check the spelling; a module of your own goes beside the config "
                             "file or on PYTHONPATH, a package is installed with pip")
    return TargetProblem(None, f"{missing.owner} has no {missing.name!r} (in {path}).{guess}",
                         f"name a class or function that {missing.owner} defines or imports")


def _arguments(path: str, found: Found, static: StaticFinder, kwargs: Sequence[str],
               positional: int | None) -> list[TargetProblem]:
    accepted = signature(found, static)
    if accepted is None:
        return []
    where = f"{_short(accepted.file)}:{accepted.line}"
    problems = []
    for keyword in kwargs:
        if accepted.accepts(keyword):
            continue
        if any(p.name == keyword for p in accepted.parameters):
            message = f"{path} takes {keyword!r} only by position, not as a keyword argument"
        else:
            message = (f"{path} does not accept the keyword argument {keyword!r}."
                       + did_you_mean(keyword, accepted.keywords))
        problems.append(TargetProblem(keyword, message, _accepts(accepted.keywords, where)))
    if positional is not None:
        for name in accepted.missing(kwargs, positional):
            problems.append(TargetProblem(None, f"{path} needs the argument {name!r}, which "
                                          "is not given", f"add {name}: <value> beside _target_ "
                                          f"({where} has no default for it)"))
    return problems


def _accepts(keywords: Sequence[str], where: str) -> str:
    if not keywords:
        return f"it takes no keyword arguments ({where})"
    return f"its keyword arguments are: {', '.join(keywords)} ({where})"


def _short(file: str) -> str:
    """``torch/optim/adam.py`` rather than the whole site-packages path."""
    parts = file.replace(os.sep, "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1:])
    try:
        relative = os.path.relpath(file)
    except ValueError:
        return file
    return file if relative.startswith("..") else relative


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'Adam'?`` when a close candidate exists, else ``''``: the fewest edits
    (a swap of neighbours is one: ``Adma`` -> ``Adam``), ignoring case, then `difflib`'s
    closest. Private names are offered only for a private name."""
    pool = [c for c in dict.fromkeys(candidates) if name.startswith("_") or not c.startswith("_")]
    limit = max(1, len(name) // 3)
    scored = sorted((_edits(name.lower(), c.lower()), -difflib.SequenceMatcher(None, name, c)
                     .ratio(), c) for c in pool if abs(len(c) - len(name)) <= limit)
    if scored and scored[0][0] <= limit:
        return f" Did you mean {scored[0][2]!r}?"
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def _edits(a: str, b: str) -> int:
    """Edits from ``a`` to ``b``: insertions, deletions, substitutions, adjacent swaps."""
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        before, previous = previous, current
    return previous[-1]
