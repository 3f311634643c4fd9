"""`_target_` paths checked from source (config/targets.py and the static_* modules it uses).

The package under test raises when imported: every check here must only read it.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from stagegraph.config.targets import (
    BUILTIN_CALLBACKS,
    TargetProblem,
    builtin_callback_path,
    check_target,
    did_you_mean,
)

FILES = {
    "proj/__init__.py": """
        from proj.models import Net as Net
        from .losses import *
        raise RuntimeError("proj was imported: the checks must only read it")
        """,
    "proj/models.py": """
        import functools
        from dataclasses import dataclass

        from fast_ext import Thing

        class Base:
            def __init__(self, width, *, depth=2):
                self.width = width

        class Net(Base):
            pass

        class Wide(Net):
            def __init__(self, scale=1.0, **kwargs):
                kwargs.setdefault("depth", 3)
                super().__init__(**kwargs)

        class Free(Base):
            def __init__(self, scale=1.0, **kwargs):
                self.extra = kwargs

        def make(hidden, dropout=0.1):
            return hidden

        @functools.lru_cache(maxsize=None)
        def cached(size):
            return size

        @some_registry.register
        def wrapped(size):
            return size

        @dataclass
        class Conf:
            x: int = 1

        class FromExt(Thing):
            def __init__(self, a):
                pass

        class Meta(metaclass=Registry):
            def __init__(self, a):
                pass

        class WithNew:
            def __new__(cls, *args):
                return super().__new__(cls)
            def __init__(self, a):
                pass

        class Positional:
            def __init__(self, a, /, b):
                pass

        class Builder:
            @classmethod
            def create(cls, size=1):
                return cls()

        try:
            from fast_ext import thing
        except ImportError:
            thing = None
        """,
    "proj/losses.py": """
        __all__ = ["FocalLoss"]

        class FocalLoss:
            def __init__(self, gamma=2.0):
                pass

        class Hidden:
            pass
        """,
    "proj/lazy.py": """
        def __getattr__(name):
            return name
        """,
    "proj/reexport.py": """
        import proj.losses as L
        from proj.models import Wide as Alias
        Other = L.FocalLoss
        """,
    "proj/sub/tools.py": """
        def helper(x=1):
            return x
        """,
}


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("tree")
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return [str(root), *sys.path]


def check(path: str, *kwargs: str, search: list[str], positional: int | None = None
          ) -> list[TargetProblem]:
    return check_target(path, kwargs, search_path=search, positional=positional)


def messages(problems: list[TargetProblem]) -> list[tuple[str | None, str]]:
    return [(p.key, p.message) for p in problems]


def test_nothing_is_imported(search: list[str]) -> None:
    for path in ("proj.Net", "proj.models.Net", "proj.FocalLoss", "proj.nope", "proj.sub.x.y"):
        check(path, "width", search=search)
    assert "proj" not in sys.modules


@pytest.mark.parametrize("path", ["proj.Net", "proj.models.Net", "proj.models:Net",
                                  "proj.reexport.Alias", "proj.models.Wide"])
def test_a_class_found_through_re_exports_and_its_inherited_init(search: list[str],
                                                                 path: str) -> None:
    assert check(path, "width", "depth", search=search) == []


def test_a_misspelt_keyword_gets_a_did_you_mean(search: list[str]) -> None:
    (problem,) = check("proj.Net", "widht", search=search)
    assert problem.key == "widht"
    assert problem.message == ("proj.Net does not accept the keyword argument 'widht'. "
                               "Did you mean 'width'?")
    assert problem.hint.startswith("its keyword arguments are: width, depth (")
    assert "proj/models.py:8)" in problem.hint


def test_kwargs_handed_to_super_accept_what_the_base_accepts(search: list[str]) -> None:
    assert check("proj.models.Wide", "scale", "width", search=search, positional=0) == []
    assert messages(check("proj.models.Wide", "deep", search=search)) == [
        ("deep", "proj.models.Wide does not accept the keyword argument 'deep'. "
                 "Did you mean 'depth'?")]
    assert check("proj.models.Free", "anything", search=search) == []  # kwargs kept: any key


def test_a_star_import_honours_all(search: list[str]) -> None:
    assert check("proj.FocalLoss", "gamma", search=search) == []
    assert messages(check("proj.FocalLos", search=search)) == [
        (None, "proj has no 'FocalLos' (in proj.FocalLos). Did you mean 'FocalLoss'?")]
    assert check("proj.losses.Hidden", search=search) == []
    assert check("proj.Hidden", search=search)[0].message.startswith("proj has no 'Hidden'")


def test_an_alias_of_a_module_attribute(search: list[str]) -> None:
    assert check("proj.reexport.Other", "gamma", search=search) == []
    assert check("proj.reexport.Other", "gama", search=search)[0].key == "gama"


@pytest.mark.parametrize(("path", "message"), [
    ("porj.models.Net", "no module named 'porj' (in porj.models.Net). Did you mean 'proj'?"),
    ("proj.modles.Net", "proj has no 'modles' (in proj.modles.Net). Did you mean 'models'?"),
    ("proj.models.Nte", "proj.models has no 'Nte' (in proj.models.Nte). Did you mean 'Net'?"),
    ("proj.modles:Net", "proj has no 'modles' (in proj.modles:Net). Did you mean 'models'?"),
    ("proj.sub.tols.helper",
     "proj.sub has no 'tols' (in proj.sub.tols.helper). Did you mean 'tools'?"),
])
def test_a_missing_module_or_name_gets_a_did_you_mean(search: list[str], path: str,
                                                      message: str) -> None:
    assert messages(check(path, search=search)) == [(None, message)]


def test_a_namespace_package(search: list[str]) -> None:
    assert check("proj.sub.tools.helper", "x", search=search) == []
    assert check("proj.sub.tools.helper", "y", search=search)[0].key == "y"


@pytest.mark.parametrize("path", [
    "proj.models.wrapped",  # a decorator that may change the signature
    "proj.models.Conf",  # a dataclass: its __init__ is generated
    "proj.models.FromExt",  # a base class that cannot be read
    "proj.models.Meta",  # a metaclass
    "proj.models.WithNew",  # __new__
    "proj.models.thing",  # bound on a branch that may not run
    "proj.lazy.anything",  # a module __getattr__
])
def test_what_cannot_be_read_is_not_known_and_reports_nothing(search: list[str],
                                                              path: str) -> None:
    assert check(path, "bogus", search=search, positional=0) == []


def test_a_safe_decorator_and_a_classmethod_keep_their_signature(search: list[str]) -> None:
    assert check("proj.models.cached", "size", search=search) == []
    assert check("proj.models.cached", "sise", search=search)[0].key == "sise"
    assert check("proj.models.Builder.create", "size", search=search) == []
    assert check("proj.models.Builder.create", "cls", search=search)[0].key == "cls"


def test_a_positional_only_parameter_by_keyword(search: list[str]) -> None:
    assert messages(check("proj.models.Positional", "a", "b", search=search)) == [
        ("a", "proj.models.Positional takes 'a' only by position, not as a keyword argument")]


def test_required_parameters_are_checked_only_when_the_positional_count_is_known(
        search: list[str]) -> None:
    assert check("proj.models.make", search=search) == []
    assert messages(check("proj.models.make", search=search, positional=0)) == [
        (None, "proj.models.make needs the argument 'hidden', which is not given")]
    assert check("proj.models.make", search=search, positional=1) == []
    assert check("proj.models.make", "hidden", search=search, positional=0) == []
    assert check("proj.models.Net", search=search, positional=0)[0].message.endswith(
        "needs the argument 'width', which is not given")


def test_a_module_is_not_a_target(search: list[str]) -> None:
    assert messages(check("proj.models", search=search)) == [
        (None, "proj.models is a module, not a class or function")]


@pytest.mark.parametrize("path", ["proj..Net", "proj.models.", "proj:models:Net", "1proj.x", ""])
def test_a_malformed_path(search: list[str], path: str) -> None:
    (problem,) = check(path, search=search)
    assert "is not a dotted path" in problem.message


def test_builtin_callbacks_are_read_from_the_runtime_without_importing_it() -> None:
    assert BUILTIN_CALLBACKS["AccuracyCallback"] == \
        "stagegraph.runtime.callbacks.AccuracyCallback"
    assert builtin_callback_path("EarlyStoppingCallback") == \
        "stagegraph.runtime.callbacks.EarlyStoppingCallback"
    assert builtin_callback_path("topk_names") is None  # a function in __all__, not a callback
    assert "CSVLogger" in BUILTIN_CALLBACKS and len(BUILTIN_CALLBACKS) >= 10


def test_a_builtin_callback_by_its_short_name(search: list[str]) -> None:
    assert check("AccuracyCallback", "topk", "after", search=search, positional=0) == []
    assert messages(check("AccuracyCallback", "toppk", search=search)) == [
        ("toppk", "AccuracyCallback does not accept the keyword argument 'toppk'. "
                  "Did you mean 'topk'?")]
    (problem,) = check("AccuracyCalback", search=search)
    assert problem.message == ("'AccuracyCalback' is not a built-in callback. "
                               "Did you mean 'AccuracyCallback'?")
    assert "EarlyStoppingCallback" in problem.hint


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    module = tmp_path / "changing.py"
    module.write_text("def f(a):\n    pass\n", encoding="utf-8")
    search = [str(tmp_path)]
    assert check("changing.f", "b", search=search)[0].key == "b"
    module.write_text("def f(a, bb=1):\n    pass\n", encoding="utf-8")
    assert check("changing.f", "bb", search=search) == []


@pytest.mark.parametrize(("name", "candidates", "guess"), [
    ("Adma", ["Adam", "Adamax", "Adagrad"], "Adam"),
    ("lrr", ["lr", "betas"], "lr"),
    ("adamw", ["Adam", "AdamW"], "AdamW"),
    ("Hidden", ["_Hidden", "Other"], None),  # private names only for a private name
    ("xyz", ["abc"], None),
])
def test_did_you_mean(name: str, candidates: list[str], guess: str | None) -> None:
    assert did_you_mean(name, candidates) == (f" Did you mean {guess!r}?" if guess else "")
