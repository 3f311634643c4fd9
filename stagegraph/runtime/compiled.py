"""Compiled steps: a stage's model and criterion compiled with `torch.compile` once, at its start.

A module is compiled in place, the way ``nn.Module.compile`` does it: its ``__call__`` goes
through a compiled function, while the module object, its parameters and its ``state_dict``
keys stay what they were (no ``_orig_mod.`` prefix reaches a checkpoint), ``train()`` /
``eval()`` act on it as before, and a DDP wrapper around it calls the compiled call. At stage
end the module gets its plain call back. ``nn.Module.compile`` itself is not used: in torch
2.13 it compiles nothing for torch's own classes (``nn.Sequential``, ``nn.CrossEntropyLoss``),
whose ``_call_impl`` frames dynamo skips; an entry function of stagegraph's gives dynamo a frame
to start from, and, being a fresh code object per module and stage, its own cache, so the
compilations of one module are counted apart from every other's. A criterion that is a plain
function is replaced by its compiled version in ``runner.criterion`` for the stage.

Dynamo compiles once per mode the stage runs the module in (train with gradients, eval without
them), and once more when a batch of another size comes (the last, smaller batch of a loader):
with torch's default ``dynamic=None`` the second size compiles a graph whose batch dimension is
symbolic and which serves every size after it. So up to two compilations per mode are
expected; more are reported at stage end with a warning naming the stage and the count.

If the backend cannot compile (no working C++ compiler for inductor on CPU, say), the first call
raises `BackendCompilerFailed`; the module then runs eagerly for the rest of the stage — the
same results, without the speed — and a warning says why and what to change.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from stagegraph.runtime.errors import BindingError, StagegraphWarning

#: Compilations expected per mode (train, eval) a stage runs a compiled callable in.
PER_MODE = 2

_FALLBACK_HINT = ("compile={'backend': 'aot_eager'} exercises the machinery without a C++ "
                  "compiler; compile=False runs eagerly without this warning")


@dataclass
class Compiled:
    """One compiled callable of a stage: its name, the entry whose cache counts compilations,
    and how to undo it."""

    name: str
    entry: Callable[..., Any]
    restore: Callable[[], None]
    failed: bool = False

    def count(self) -> int | None:
        """How many times dynamo compiled the entry; ``None`` where torch cannot say."""
        listing = getattr(torch._dynamo.eval_frame, "_debug_get_cache_entry_list", None)
        if listing is None:
            return None
        return len(listing(self.entry.__code__))


@dataclass
class CompiledStage:
    """The compiled callables of one stage (``modes``: how many of train / eval it runs)."""

    stage: str
    options: dict[str, Any]
    modes: int
    items: list[Compiled] = field(default_factory=list)
    unavailable: bool = False  # torch.compile itself failed: said once, nothing compiled

    def counts(self) -> dict[str, int | None]:
        """Compilations so far, by callable (``model``, ``criterion``, ``model.generator``)."""
        return {item.name: item.count() for item in self.items}

    def release(self, report: bool = True) -> dict[str, int | None]:
        """Give every module its plain call back; warn of more compilations than expected."""
        counts = self.counts()
        for item in self.items:
            item.restore()
        self.items = []
        if report:
            self._report(counts)
        return counts

    def _report(self, counts: Mapping[str, int | None]) -> None:
        expected = PER_MODE * self.modes
        limit = torch._dynamo.config.recompile_limit
        for name, count in counts.items():
            if count is None or count <= expected:
                continue
            gave_up = (f"; it reached torch._dynamo.config.recompile_limit ({limit}), so later "
                       "calls of new variants ran eagerly") if count >= limit else ""
            warnings.warn(StagegraphWarning(
                f"stage {self.stage!r}: the compiled {name} was compiled {count} times, more "
                f"than the {expected} expected (one graph per mode, train and eval, and one "
                f"more each for a batch of another size){gave_up}; TORCH_LOGS=recompiles says "
                "why (a Python value that changes, a new input shape or dtype); "
                "compile={'dynamic': True} avoids recompiling for shapes"), stacklevel=2)


def compile_stage(stage: str, options: dict[str, Any] | None, model: Any, criterion: Any,
                  modes: int) -> tuple[CompiledStage | None, Any]:
    """Compile ``model`` (in place) and ``criterion``; returns the record and the criterion to
    use (a plain function's compiled version). ``options=None``: nothing is compiled."""
    if options is None:
        return None, criterion
    compiled = CompiledStage(stage, options, modes)
    for name, module in _modules(model, "model"):
        _compile_module(compiled, name, module)
    if isinstance(criterion, Mapping):
        criterion = {key: _compile_criterion(compiled, f"criterion.{key}", value)
                     for key, value in criterion.items()}
    else:
        criterion = _compile_criterion(compiled, "criterion", criterion)
    return compiled, criterion


def _modules(value: Any, name: str) -> list[tuple[str, nn.Module]]:
    if isinstance(value, Mapping):
        return [pair for key, item in value.items() for pair in _modules(item, f"{name}.{key}")]
    while isinstance(value, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        value = value.module  # the inner module: DDP's hooks and buckets work around its call
    return [(name, value)] if isinstance(value, nn.Module) else []


def _compile_module(compiled: CompiledStage, name: str, module: nn.Module) -> None:
    if _already_compiled(module):
        return  # the user compiled it: compiling the compiled call again would nest two
    entry = _entry(module._call_impl)
    fast = _torch_compile(compiled, name, entry)
    if fast is None:
        return

    def restore() -> None:
        module._compiled_call_impl = None

    item = Compiled(name, entry, restore)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fast(*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as err:
            _fell_back(compiled, item, err)
            return module(*args, **kwargs)

    module._compiled_call_impl = guarded
    compiled.items.append(item)


def _compile_criterion(compiled: CompiledStage, name: str, criterion: Any) -> Any:
    if isinstance(criterion, nn.Module):
        _compile_module(compiled, name, criterion)
        return criterion
    if not callable(criterion):
        return criterion
    entry = _entry(criterion)
    fast = _torch_compile(compiled, name, entry)
    if fast is None:
        return criterion
    state = {"call": fast}
    item = Compiled(name, entry, lambda: None)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return state["call"](*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as err:
            _fell_back(compiled, item, err)
            state["call"] = criterion
            return criterion(*args, **kwargs)

    item.restore = lambda: state.update(call=criterion)
    compiled.items.append(item)
    return guarded


def _entry(call: Callable[..., Any]) -> Callable[..., Any]:
    """A frame of stagegraph's own that calls ``call``, for dynamo to start from; a new code
    object each time, so that its cache (and the count of its compilations) is its own."""
    def compiled_entry(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    compiled_entry.__code__ = compiled_entry.__code__.replace()
    return compiled_entry


def _torch_compile(compiled: CompiledStage, name: str, entry: Callable[..., Any]
                   ) -> Callable[..., Any] | None:
    """``torch.compile(entry, **options)``; ``None`` (after a warning) where torch cannot."""
    if compiled.unavailable:
        return None
    try:
        return torch.compile(entry, **compiled.options)
    except Exception as err:
        if type(err).__name__ == "InvalidBackend":  # by name: torch._dynamo may not import
            raise BindingError(f"stage {compiled.stage!r} > compile: "
                               f"{_backend_problem(compiled)}") from err
        compiled.unavailable = True
        warnings.warn(StagegraphWarning(
            f"stage {compiled.stage!r}: torch.compile is not available here, so the stage runs "
            f"eagerly: {type(err).__name__}: {_first_line(err)}; hint: compile=False runs "
            "eagerly without this warning"), stacklevel=3)
        return None


def _fell_back(compiled: CompiledStage, item: Compiled, err: Exception) -> None:
    item.failed = True
    item.restore()
    backend = compiled.options.get("backend", "inductor")
    name = backend if isinstance(backend, str) else getattr(backend, "__qualname__", backend)
    cause = getattr(err, "inner_exception", None) or err
    warnings.warn(StagegraphWarning(
        f"stage {compiled.stage!r}: torch.compile's backend {name!r} could not compile the "
        f"{item.name}, which runs eagerly for the rest of the stage (same results, without the "
        f"speed): {type(cause).__name__}: {_first_line(cause)}; hint: {_FALLBACK_HINT}"),
        stacklevel=3)


def _backend_problem(compiled: CompiledStage) -> str:
    backend = compiled.options.get("backend")
    known = torch._dynamo.list_backends(exclude_tags=())
    close = difflib.get_close_matches(str(backend), known, n=1)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    return (f"torch.compile has no backend {backend!r}.{guess} Its backends here: "
            f"{', '.join(known)}")


def _already_compiled(module: nn.Module) -> bool:
    return module._compiled_call_impl is not None or "_orig_mod" in module._modules


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
