"""The runtime's errors: a plan that cannot run, a device that is missing, a run that failed."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

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


class ResumeError(PlanError):
    """A run cannot resume: no usable checkpoint, or the plan changed since it was written.

    ``diagnostics`` hold the reasons (``SF6xx`` codes, see docs/diagnostics.md).
    """


class LogdirError(StagegraphRuntimeError):
    """The log directory cannot take this run: another run holds it, or it holds an unfinished
    run that this one would replace (see docs/checkpoints.md). ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.message, self.hint = message, hint
        super().__init__(f"{message}\n  hint: {hint}" if hint else message)


class CheckpointFileError(StagegraphRuntimeError):
    """A checkpoint file the run reads back is missing, or is not the file it wrote."""


class CheckpointWriteError(StagegraphRuntimeError):
    """A checkpoint file could not be written (a full disk, a read-only folder...).

    ``path`` is the file; ``__cause__`` the `OSError` (or other error) behind it.
    """

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class BatchError(StagegraphRuntimeError):
    """A loader yielded a batch the runtime cannot measure or move."""


class NonFiniteLossError(StagegraphRuntimeError):
    """A loss was NaN or infinite and the optimizer callback was told to stop on it."""


class StagegraphWarning(UserWarning):
    """Base of the warnings the runtime gives; ``diagnostic`` is set when it has a code."""

    def __init__(self, message: str, diagnostic: Diagnostic | None = None) -> None:
        super().__init__(message)
        self.diagnostic = diagnostic


class ResumeWarning(StagegraphWarning):
    """Resuming goes ahead, but something was skipped or ignored (a corrupt file, a change)."""


@contextlib.contextmanager
def plain_warnings() -> Iterator[None]:
    """Show stagegraph's warnings as ``warning: ...`` lines on stderr, as the CLI does.

    They say where they come from themselves; Python's default format would add the source line
    of the ``warnings.warn`` call inside stagegraph. Other warnings keep the default format.
    """
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, StagegraphWarning):
            text = str(message)
            print(text if text.startswith("warning[") else f"warning: {text}", file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
