"""A stage's ``compile=`` option: which `torch.compile` options its model and criterion get (SF530).

``compile=True`` compiles with torch's defaults; a dict passes the options `torch.compile`
takes (``mode``, ``fullgraph``, ``dynamic``, ``backend``, ``options``, ``disable``);
``False`` (the default) compiles nothing. A stage's own value wins over the experiment's
(``Experiment(compile=...)``); ``None`` means "the experiment's". This module checks the value
without importing torch, so a misspelt option is found by ``stagegraph validate``; the runtime
(`stagegraph.runtime.compiled`) calls `torch.compile` with `torch_options`.

>>> from stagegraph.compiler.diagnostics import Diagnostics
>>> diags = Diagnostics()
>>> compile_plan({"backend": "eager", "fulgraph": True}, diags, stage="train")
CompilePlan(backend='eager', mode=None, fullgraph=False, dynamic=None, options=None)
>>> print(diags.items[0].message)
compile has no option 'fulgraph'. Did you mean 'fullgraph'?
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.plan import CompilePlan
from stagegraph.graph.experiment import Experiment, StageDef

#: The keyword arguments `torch.compile` takes besides the function.
COMPILE_KEYS = ("mode", "fullgraph", "dynamic", "backend", "options", "disable")
#: The modes `torch.compile` knows.
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

_HINT = ("compile is True, False, or a dict of torch.compile options: "
         + ", ".join(COMPILE_KEYS) + ", e.g. compile={'backend': 'aot_eager'}")


def stage_compile(experiment: Experiment, stage: StageDef) -> Any:
    """The stage's raw ``compile`` value: its own, else the experiment's."""
    own = stage.params.get("compile")
    return own if own is not None else getattr(experiment, "compile", False)


def compile_plan(value: Any, diags: Diagnostics, **where: str | None) -> CompilePlan | None:
    """``value`` checked (SF530 for each problem, located at ``where``); ``None``: no compiling.

    A bad option is reported and left out, so the plan shows what the rest would do.
    """
    if value is None or value is False:
        return None
    if value is True:
        return CompilePlan()
    if not isinstance(value, Mapping):
        diags.error("SF530", f"compile must be True, False or a dict of torch.compile options, "
                    f"not {value!r}", _HINT, param="compile", **where)
        return None
    good: dict[str, Any] = {}
    for key, option in value.items():
        problem = _problem(key, option)
        if problem:
            diags.error("SF530", problem, _HINT, param="compile", **where)
        else:
            good[key] = option
    if good.get("mode") is not None and good.get("options") is not None:
        diags.error("SF530", "compile gives both 'mode' and 'options', which torch.compile "
                    "refuses", "keep one: a mode such as 'max-autotune', or inductor options",
                    param="compile", **where)
        good.pop("options")
    if good.pop("disable", False):
        return None
    backend = good.pop("backend", "inductor")
    name = backend if isinstance(backend, str) else _qualname(backend)
    return CompilePlan(backend=name, **good)


def torch_options(value: Any) -> dict[str, Any] | None:
    """The keyword arguments for `torch.compile` (``None``: do not compile), live values kept
    (a callable backend). ``value`` is one `compile_plan` accepted without errors."""
    if value is None or value is False:
        return None
    options = {} if value is True else dict(value)
    if options.pop("disable", False):
        return None
    return options


def _problem(key: object, option: Any) -> str:
    """What is wrong with one option, ``""`` when nothing is."""
    if key not in COMPILE_KEYS:
        return f"compile has no option {key!r}." + did_you_mean(key, COMPILE_KEYS)
    if key in ("fullgraph", "disable") and not isinstance(option, bool):
        return f"compile option {key!r} is True or False, not {option!r}"
    if key == "dynamic" and not (option is None or isinstance(option, bool)):
        return f"compile option 'dynamic' is True, False or None, not {option!r}"
    if key == "mode" and option is not None and option not in MODES:
        return (f"compile option 'mode' is one of {', '.join(MODES)}, not {option!r}."
                + did_you_mean(option, MODES))
    if key == "backend" and not ((isinstance(option, str) and option) or callable(option)):
        return f"compile option 'backend' is a backend's name or a callable, not {option!r}"
    if key == "options" and option is not None and not (
            isinstance(option, Mapping) and all(isinstance(k, str) for k in option)):
        return f"compile option 'options' is a dict of inductor settings, not {option!r}"
    return ""


def _qualname(value: Any) -> str:
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{getattr(value, '__module__', '?')}.{name}"
