"""User callbacks read without importing them (config/static_callback.py) and their stand-ins."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import LOADERS, experiment

import stagegraph as sg
from stagegraph.compiler.inference import STATIC_SOURCE as INFERENCE_MARKER
from stagegraph.compiler.schema import DECLARATION_FIELDS
from stagegraph.config.static_callback import DECLARATIONS, STATIC_SOURCE, StaticCallback
from stagegraph.config.targets import static_callback

MODULE = "team_callbacks"
SOURCE = '''\
"""Callbacks a team keeps next to its experiment configs."""

from __future__ import annotations

from typing import Any

import stagegraph as sg
from stagegraph import CallbackOrder


class RunningMean(sg.Callback):
    """A base class of the team's: a running mean over a loader."""

    order = CallbackOrder.Metric + 5
    claims = ["files:means/"]

    def on_loader_start(self, runner: Any) -> None:
        self.total, self.count = 0.0, 0

    def _add(self, runner: Any, value: float) -> None:
        self.total += value
        self.count += 1


class F1Callback(RunningMean):
    """F1 of the positive class, written per batch."""

    order = sg.CallbackOrder.Metric
    reads = ("output.logits", "batch.targets")
    node = sg.CallbackNode.master

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = beta

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["f1"] = self.beta

    def on_loader_end(self, runner: Any) -> None:
        runner.loader_metrics["f1_mean"] = self.total / max(self.count, 1)


class Reporter(sg.Callback):
    order: int = sg.CallbackOrder.Logging
    scope = sg.CallbackScope.experiment
    lints = {"SF301": "allow"}
    watch = "f1"
    watch_minimize = False

    def on_epoch_end(self, runner: Any) -> None:
        print(runner.epoch_metrics.get("valid_f1"))

    def on_epoch_ned(self, runner: Any) -> None:  # misspelt: the compiler says so (SF107)
        pass


class Dynamic(sg.Callback):
    order = 10 if sg else 20
    reads = ("output.logits",)

    def __init__(self, key: str = "x") -> None:
        super().__init__()
        self.writes = (f"metric.{key}",)
'''


@pytest.fixture
def search(tmp_path: Path) -> list[str]:
    (tmp_path / f"{MODULE}.py").write_text(SOURCE, encoding="utf-8")
    return [str(tmp_path), *sys.path]


def line_of(text: str) -> int:
    """The line of SOURCE that holds ``text``."""
    (number,) = [i for i, line in enumerate(SOURCE.splitlines(), 1) if text in line]
    return number


def read(path: str, search: list[str]) -> StaticCallback:
    found = static_callback(path, search_path=search)
    assert found is not None
    return found


def test_declarations_events_and_init_are_read_without_importing(search: list[str]) -> None:
    f1 = read(f"{MODULE}.F1Callback", search)
    assert MODULE not in sys.modules
    assert f1.is_callback and f1.complete and f1.forwards
    assert f1.declarations == {
        "order": sg.CallbackOrder.Metric, "node": sg.CallbackNode.master,
        "reads": ("output.logits", "batch.targets"), "claims": ["files:means/"]}
    assert f1.unknown == ()
    assert f1.events == ("on_loader_start", "on_batch_end", "on_loader_end")
    assert f1.path == f"{MODULE}.F1Callback" and f1.file.endswith(f"{MODULE}.py")
    assert f1.line == line_of("class F1Callback")
    assert [c.qualname for c in f1.classes] == ["F1Callback", "RunningMean"]
    assert f1.init is not None and f1.init.keywords[:1] == ("beta",)
    assert "after" in f1.init.keywords  # **kwargs reach Callback.__init__


def test_what_is_not_literal_is_not_known(search: list[str]) -> None:
    dynamic = read(f"{MODULE}.Dynamic", search)
    assert dynamic.unknown == ("order", "writes")
    assert dynamic.declarations == {"reads": ("output.logits",)}
    assert not dynamic.forwards  # its __init__ does not hand keyword arguments on


def test_a_class_that_is_not_a_callback_and_one_that_is_not_found(search: list[str]) -> None:
    other = read("collections.abc.Sequence", search)
    assert other.is_callback is False
    assert static_callback(f"{MODULE}.Nope", search_path=search) is None
    assert static_callback(f"{MODULE}.sg", search_path=search) is None  # a module


def test_a_builtin_by_its_short_name() -> None:
    accuracy = read("AccuracyCallback", sys.path)
    assert accuracy.is_callback and accuracy.declarations["kind"] == "accuracy"
    assert accuracy.events == ("on_batch_end",)
    assert set(accuracy.unknown) == {"reads", "writes"}  # derived from its arguments


def test_the_declaration_list_is_the_compilers() -> None:
    assert set(DECLARATIONS) == set(DECLARATION_FIELDS)
    assert STATIC_SOURCE == INFERENCE_MARKER


def load(search: list[str]) -> ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE, Path(search[0]) / f"{MODULE}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    return module


def compile_with(make: Any) -> sg.ExecutionPlan:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), main_metric="f1", minimize_metric=False,
                  callbacks={
        "f1": make("F1Callback", before=("report",), beta=2.0),
        "reader": make("Reader"),
        "report": make("Reporter"),
    })
    return sg.compile(exp, verbose=False)


class Reader(sg.Callback):
    """Reads what F1Callback's code writes, declaring nothing: only inference orders them."""

    order = sg.CallbackOrder.Internal

    def on_loader_end(self, runner: Any) -> None:
        print(runner.loader_metrics["f1_mean"])


def test_a_stand_in_compiles_to_the_plan_of_the_real_class(search: list[str]) -> None:
    stand_ins = {name: read(f"{MODULE}.{name}", search).stand_in()
                 for name in ("F1Callback", "Reporter")}
    assert MODULE not in sys.modules
    static = compile_with(lambda name, **kw: Reader(**kw) if name == "Reader"
                          else stand_ins[name](**kw))
    try:
        module = load(search)
        real = compile_with(lambda name, **kw: Reader(**kw) if name == "Reader"
                            else getattr(module, name)(**kw))
    finally:
        sys.modules.pop(MODULE, None)
    assert static.to_json() == real.to_json()
    f1 = static.stages[0].callback("f1")
    assert f1.type == f"{MODULE}.F1Callback" and f1.before == ("report",)
    assert [a.key for a in f1.inferred] == ["metric.f1", "loader_metric.f1_mean"]
    assert [a.where for a in f1.inferred] == [
        f"{MODULE}.py:{line_of('batch_metrics[')}", f"{MODULE}.py:{line_of('loader_metrics[')}"]
    assert [d.code for d in static.diagnostics if d.severity == "error"] == ["SF107"]
    order = [cb.name for cb in static.stages[0].callbacks]
    assert order.index("f1") < order.index("reader")  # by inference alone: Reader is Internal


def test_a_stand_in_is_a_callback_with_the_real_names(search: list[str]) -> None:
    cls = read(f"{MODULE}.F1Callback", search).stand_in()
    assert issubclass(cls, sg.Callback)
    assert (cls.__module__, cls.__qualname__) == (MODULE, "F1Callback")
    assert [k.__qualname__ for k in cls.__mro__[:2]] == ["F1Callback", "RunningMean"]
    instance = cls(beta=3.0, order=7)
    assert instance.order == 7 and cls.order == sg.CallbackOrder.Metric
    assert read(f"{MODULE}.F1Callback", search).stand_in() is cls  # made once
    reporter = read(f"{MODULE}.Reporter", search).stand_in()  # Callback's own __init__
    assert reporter(after="f1", bogus=1).after == ("f1",)
    assert getattr(cls.on_batch_end, STATIC_SOURCE)[1:] == (line_of("def on_batch_end"),
                                                             "on_batch_end")
