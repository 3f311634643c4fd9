"""Load the `Experiment` an experiment file defines, turning every failure into a diagnostic.

``EXP`` is ``path/to/file.py`` (its attribute ``experiment``) or ``path/to/file.py:name``; the
attribute is an `Experiment` or a zero-argument function returning one. The file is imported as
a module named after its stem, with its folder on ``sys.path``, so callback type names in plans
(``digits.Accuracy``) do not depend on where the command runs. The folder goes last on
``sys.path``, so that a file next to the experiment named like a module of the standard library
or an installed package (``concurrent.py``) cannot replace that module inside stagegraph or
torch; `shadowing` names such files. Codes: SF001 file not found, SF002 syntax error, SF003
exception while executing the file, SF004 no such attribute, SF005 wrong type, SF006 the
experiment function raised; SF007 (a warning) a file named like another module. A ``.yaml``,
``.yml`` or ``.json`` EXP is a config file, read by `stagegraph.config`.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from stagegraph.graph.experiment import Experiment
from stagegraph.module_origins import elsewhere, found_in, modules_in

DEFAULT_ATTRIBUTE = "experiment"
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
#: The experiments' folders loading added to ``sys.path``: a module in one of them is not
#: another module an experiment file could be confused with (SF007), only an earlier experiment.
_FOLDERS: set[Path] = set()


@dataclass(frozen=True)
class LoadProblem:
    """Why an experiment file could not be loaded, printed like a compiler diagnostic."""

    code: str
    message: str
    hint: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None
    severity: str = "error"

    @property
    def where(self) -> str:
        parts = [self.file or "experiment file", self.line, self.column]
        return ":".join(str(p) for p in parts if p is not None)

    def __str__(self) -> str:
        text = f"{self.severity}[{self.code}] {self.where}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def to_json(self) -> dict[str, Any]:
        """The shape of ``validate --format json``'s items, with a file location instead of a
        plan location."""
        return {"code": self.code, "severity": self.severity,
                "location": {"file": self.file, "line": self.line, "column": self.column},
                "message": self.message, "hint": self.hint, "default_level": self.severity}


class LoadError(Exception):
    """Raised by `load_experiment`; ``problem`` says what went wrong and how to fix it.

    A config file may have several problems at once: ``problems`` lists them all (``problem``
    first). ``exit_code`` is the command's: 1, or 2 for a usage error (a bad ``--set``).
    """

    def __init__(self, problem: LoadProblem, *more: LoadProblem, exit_code: int = 1) -> None:
        super().__init__("\n".join(str(p) for p in (problem, *more)))
        self.problem = problem
        self.problems: tuple[LoadProblem, ...] = (problem, *more)
        self.exit_code = exit_code


def is_config_file(spec: str) -> bool:
    """Whether ``spec`` names a config file (``.yaml``, ``.yml``, ``.json``), not Python."""
    return Path(spec).suffix.lower() in CONFIG_SUFFIXES


def split_spec(spec: str) -> tuple[str, str]:
    """``'a/b.py:exp'`` → ``('a/b.py', 'exp')``; without ``:name`` the attribute is ``experiment``.

    Only a suffix that is a Python identifier counts as a name, so ``C:\\x\\exp.py`` stays a path.
    """
    path, sep, name = spec.rpartition(":")
    if sep and name.isidentifier() and path:
        return path, name
    return spec, DEFAULT_ATTRIBUTE


def load_experiment(spec: str, *, overrides: Sequence[str] = (), static: bool = False
                    ) -> Experiment:
    """The `Experiment` named by ``spec``; raises `LoadError` with a diagnostic on any failure.

    A ``.yaml``, ``.yml`` or ``.json`` file is a config file (`stagegraph.config`): ``overrides``
    are its ``--set PATH=VALUE``s, and ``static=True`` (validate, plan) imports none of the user's
    modules. A Python file takes no overrides.
    """
    if is_config_file(spec):
        from stagegraph.config import load_config

        return load_config(spec, overrides=overrides, static=static)
    path, name = split_spec(spec)
    if overrides:
        raise LoadError(LoadProblem(
            "SF001", f"--set changes a config file, and {path!r} is a Python file",
            "change the value in the file, or write the experiment as a .yaml config",
            file=path), exit_code=2)
    module = load_module(path)
    return resolve(module, name, path)


def load_module(path: str) -> ModuleType:
    """Import ``path`` as the module named after its stem, its folder last on ``sys.path``."""
    file = Path(path)
    if not file.is_file():
        message = (f"{path!r} is a folder, not an experiment file" if file.is_dir()
                   else f"experiment file {path!r} not found")
        hint = ("name the .py file inside it" if file.is_dir()
                else f"check the path (the current directory is {os.getcwd()})")
        raise LoadError(LoadProblem("SF001", message, hint, file=path))
    if file.suffix != ".py":
        raise LoadError(LoadProblem(
            "SF001", f"{path!r} is neither a Python file nor a config file",
            "EXP is a .py file that defines `experiment` (or FILE.py:NAME), or a .yaml, .yml or "
            ".json config file", file=path))
    add_folder(file)
    spec = importlib.util.spec_from_file_location(file.stem, file)
    if spec is None or spec.loader is None:
        raise LoadError(LoadProblem("SF001", f"{path!r} cannot be imported as Python",
                                    "name a .py file that defines the experiment", file=path))
    module = importlib.util.module_from_spec(spec)
    # Registered so that classes defined in the file pickle and resolve by their module name;
    # a stem that names another module (json.py, concurrent.py) is left out of sys.modules.
    registered = (_is_file_module(sys.modules[file.stem], file) if file.stem in sys.modules
                  else elsewhere(file.stem, file.resolve().parent, _FOLDERS) is None)
    if registered:
        sys.modules[file.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        if registered:
            sys.modules.pop(file.stem, None)
        if not isinstance(err, Exception):
            raise
        raise LoadError(_execution_problem(err, path)) from err
    return module


def add_folder(file: Path) -> None:
    """Put ``file``'s folder on ``sys.path`` (last), so the modules next to it import."""
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        # Last, not first: a neighbour named like a standard module must not replace it.
        sys.path.append(folder)
        _FOLDERS.add(Path(folder))


def shadowing(path: str) -> list[LoadProblem]:
    """SF007 warnings for the experiment file and the modules next to it named like a module of
    the standard library or of an installed package.

    That module hides such a file, since the folder is last on ``sys.path``; or, when the folder
    comes earlier (the current directory under ``python -m``), the file replaces it everywhere,
    stagegraph and torch included. Either way an import of that name is not what it looks like.
    """
    file = Path(path)
    folder = file.resolve().parent
    found = []
    for name, entry in modules_in(folder):
        other = elsewhere(name, folder, _FOLDERS)
        if other is None:
            continue
        itself = entry.resolve() == file.resolve()
        if itself:
            what = f"the experiment file {entry.name}"
            effect = (f"so it is not registered as module {name!r} (classes it defines cannot "
                      "be found by their module name)")
        elif found_in(name, folder):
            what = f"{entry.name} next to the experiment file"
            effect = (f"and replaces it for every `import {name}`, inside stagegraph and torch "
                      "too, because its folder comes first on sys.path")
        else:
            what = f"{entry.name} next to the experiment file"
            effect = f"which `import {name}` finds first: this file is never imported by it"
        found.append(LoadProblem(
            "SF007", f"{what} is named like {other}, {effect}",
            f"rename {entry.name} (e.g. to my_{entry.name}) and the imports of it",
            file=str(file.parent / entry.name), severity="warning"))
    return found


def _is_file_module(module: ModuleType, file: Path) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve() == file.resolve()


def _execution_problem(err: Exception, path: str) -> LoadProblem:
    if isinstance(err, SyntaxError):
        return _syntax_problem(err, path)
    line, raised_at = _user_line(err, path)
    message = f"{type(err).__name__}: {err}"
    if raised_at:
        message += f" (raised in {raised_at})"
    if isinstance(err, ImportError):
        hint = ("a module the file imports is missing: install it in this environment, or put "
                "it next to the experiment file")
    else:
        hint = "the file raised while it was being imported; fix the error at that line"
    return LoadProblem("SF003", message, hint, file=path, line=line)


def _syntax_problem(err: SyntaxError, path: str) -> LoadProblem:
    same = err.filename is not None and _same_file(err.filename, path)
    file = path if same else err.filename
    text = (err.text or "").rstrip("\n")
    hint = f"line {err.lineno} reads: {text.strip()}" if text.strip() else "fix the syntax"
    message = f"{type(err).__name__}: {err.msg}"
    return LoadProblem("SF002", message, hint, file=file, line=err.lineno, column=err.offset)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _user_line(err: BaseException, path: str) -> tuple[int | None, str]:
    """The deepest line of the user's file in the traceback, and where the error was raised."""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if _same_file(f.filename, path)]
    line = mine[-1].lineno if mine else None
    last = frames[-1] if frames else None
    raised_at = ""
    if last is not None and not _same_file(last.filename, path) and mine:
        raised_at = f"{last.filename}:{last.lineno}"
    return line, raised_at


def resolve(module: ModuleType, name: str, path: str) -> Experiment:
    """The module's ``name``: an `Experiment`, or what a zero-argument function returns."""
    if not hasattr(module, name):
        raise LoadError(_missing_problem(module, name, path))
    value = getattr(module, name)
    if isinstance(value, Experiment):
        return value
    if not callable(value):
        raise LoadError(LoadProblem(
            "SF005", f"{name!r} is {_short(value)} ({type(value).__name__}), not a "
            "stagegraph.Experiment",
            f"set {name} = stagegraph.Experiment(...) or make it a function returning one",
            file=path, line=_definition_line(module, name)))
    return _call_factory(value, name, path)


def _call_factory(factory: Any, name: str, path: str) -> Experiment:
    line = _line_of(factory)
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise LoadError(LoadProblem(
            "SF005", f"{name!r} needs arguments, but an experiment function takes none",
            "give every parameter a default, or wrap it: def experiment(): return make(...)",
            file=path, line=line)) from None
    except ValueError:
        pass  # no signature to check (a builtin): just call it
    try:
        value = factory()
    except Exception as err:
        raised_line, raised_at = _user_line(err, path)
        message = f"{name}() raised {type(err).__name__}: {err}"
        if raised_at:
            message += f" (raised in {raised_at})"
        raise LoadError(LoadProblem(
            "SF006", message, "fix the error; the function must return a stagegraph.Experiment",
            file=path, line=raised_line or line)) from err
    if not isinstance(value, Experiment):
        raise LoadError(LoadProblem(
            "SF005", f"{name}() returned {type(value).__name__}, not a stagegraph.Experiment",
            "return the Experiment you built (a missing `return` gives None)",
            file=path, line=line))
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _line_of(obj: Any) -> int | None:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return None


def _definition_line(module: ModuleType, name: str) -> int | None:
    """The first line that assigns ``name`` at the start of a line, for a better location."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    for number, text in enumerate(source.splitlines(), 1):
        if text.startswith(name) and text[len(name):].lstrip().startswith(("=", ":")):
            return number
    return None


def _missing_problem(module: ModuleType, name: str, path: str) -> LoadProblem:
    found = candidates(module)
    guess = difflib.get_close_matches(name, [n for n in vars(module) if not n.startswith("_")],
                                      n=1, cutoff=0.6)
    message = f"{Path(path).name} defines no {name!r}."
    if guess:
        message += f" Did you mean {guess[0]!r}?"
    if found:
        listed = ", ".join(f"{n!r} ({kind})" for n, kind in found.items())
        first = next(iter(found))
        hint = f"it defines {listed}; pick one with {path}:{first}"
    else:
        hint = (f"define {name} = stagegraph.Experiment(...), or a function {name}() returning "
                "one, or pick another attribute with FILE.py:NAME")
    return LoadProblem("SF004", message, hint, file=path)


def candidates(module: ModuleType) -> dict[str, str]:
    """Attributes that look like an experiment: instances, and functions that may return one."""
    found: dict[str, str] = {}
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, Experiment):
            found[attr] = "Experiment"
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            returns = str(inspect.signature(value).return_annotation)
            if "Experiment" in returns or "exp" in attr.lower():
                found[attr] = "function"
    return found
