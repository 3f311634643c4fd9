"""The runtime's errors: a plan that cannot run, a device that is missing, a run that failed."""

from __future__ import annotations

from collections.abc import Iterable

from stagegraph.compiler.diagnostics import Diagnostic


class StagegraphRuntimeError(Exception):
    """Base of every error the runtime raises itself."""


class PlanError(StagegraphRuntimeError):
    """The plan cannot be run: it has error diagnostics, or it does not match its experiment."""

    def __init__(self, message: str, diagnostics: Iterable[Diagnostic] = ()) -> None:
        self.diagnostics = tuple(diagnostics)
        lines = [message, *(str(d) for d in self.diagnostics)]
        super().__init__("\n".join(lines))

    @classmethod
    def from_diagnostics(cls, experiment: str, diagnostics: Iterable[Diagnostic]) -> PlanError:
        errors = tuple(diagnostics)
        return cls(f"the plan for experiment {experiment!r} has {len(errors)} error(s) and "
                   "cannot run; fix them (`stagegraph validate` lists them too):", errors)


class DeviceError(StagegraphRuntimeError):
    """The requested device does not exist on this machine."""


class BindingError(StagegraphRuntimeError):
    """A callback or component named by the plan cannot be found or built."""


class DistributedError(StagegraphRuntimeError):
    """A distributed run cannot start: its environment or process group is not usable."""


class RunError(StagegraphRuntimeError):
    """An exception escaped during the run; the message says where, ``__cause__`` is the original.

    ``where`` holds the location fields (``stage``, ``epoch``, ``loader``, ``batch``, ``callback``,
    ``event``) that apply.
    """

    def __init__(self, message: str, where: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.where = dict(where or {})
