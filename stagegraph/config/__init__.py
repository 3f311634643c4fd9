"""Experiments as config files (YAML or JSON): read with positions, validated, built into an
`Experiment`. No torch here, and no user module is imported while validating.

`load_config` runs the steps in order, each in its own module::

    read (document) -> --set (overrides) -> defaults merge (defaults) -> ${...} (interpolation)
    -> schema (validation) -> Experiment (build, callbacks, factories)

Every problem is located at the line and column of the key or value it is about; all of them are
raised together as a `ConfigError` (exit code 2 when a ``--set`` is at fault). The experiment
keeps the effective config (``experiment.config``: after ``--set``, defaults and interpolation),
which a run saves beside its plan and ``--resume`` compares, and its positions
(``experiment.document``), by which `stagegraph.config.positions` locates the compiler's
diagnostics.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stagegraph.config.build import Builder, ConfigExperiment
from stagegraph.config.defaults import merge_defaults
from stagegraph.config.document import SUFFIXES, Document, read_document
from stagegraph.config.interpolation import interpolate
from stagegraph.config.overrides import OVERRIDE_CODES, apply_overrides
from stagegraph.config.positions import LocatedDiagnostic, locate
from stagegraph.config.precheck import precheck_targets
from stagegraph.config.problems import ConfigError, ConfigProblem, Position, Problems
from stagegraph.config.validation import validate
from stagegraph.loading import LoadError, LoadProblem, add_folder

__all__ = [
    "SUFFIXES",
    "ConfigError",
    "ConfigExperiment",
    "ConfigProblem",
    "LocatedDiagnostic",
    "Position",
    "effective_config",
    "load_config",
    "locate",
]


def load_config(path: str, *, overrides: Sequence[str] = (), static: bool = False
                ) -> ConfigExperiment:
    """The experiment the config file ``path`` describes, with ``overrides`` (``PATH=VALUE``).

    ``static=True`` (validate, plan, explain) imports no module of the user's: their callbacks
    are stand-ins read from source. Otherwise (run) the config file's folder goes on
    ``sys.path`` (last) and user callbacks are imported. Raises `ConfigError` with every problem.
    """
    file = Path(path)
    if not file.is_file():
        message = (f"{path!r} is a folder, not an experiment file" if file.is_dir()
                   else f"experiment file {path!r} not found")
        raise LoadError(LoadProblem("SF001", message, "check the path", file=path))
    problems = Problems()
    document = read_document(path, problems)
    problems.raise_if_errors()
    assert document is not None
    apply_overrides(document, overrides, problems)
    problems.raise_if_errors(exit_code=2)
    merge_defaults(document)
    interpolate(document, problems)
    search_path = [str(file.resolve().parent), *sys.path]
    if not problems.errors:
        validate(document, problems)
        if problems.errors:  # no experiment is built: still say what is wrong with its targets
            precheck_targets(document, problems, search_path)
    problems.raise_if_errors(exit_code=_exit_code(problems))
    if not static:
        add_folder(file)
    experiment = Builder(document, problems, static=static,
                         search_path=search_path).experiment()
    problems.raise_if_errors()
    experiment.notes = problems.warnings
    experiment.config = effective_config(document)
    return experiment


def effective_config(document: Document) -> dict[str, Any]:
    """The config as it runs: ``--set`` applied, defaults merged into the stages (the
    ``defaults`` block itself left out) and ``${...}`` resolved; JSON-serialisable."""
    data = {k: v for k, v in document.data.items() if k not in ("defaults", "$schema")}
    return _plain(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _exit_code(problems: Problems) -> int:
    return 2 if any(p.code in OVERRIDE_CODES for p in problems.errors) else 1
