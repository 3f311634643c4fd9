"""Building the Experiment: lazy factories, callbacks made or stood in for (config/build.py,
config/factories.py, config/callbacks.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from config_helpers import first_lines, load, problems

import stagegraph as sg
from stagegraph.config import factories
from stagegraph.config.factories import NamedLoader, OptimizerFactory, Target, instantiate
from stagegraph.graph.handler import SupervisedHandler

PARTS = '''
calls = []


def record(name, **kwargs):
    calls.append((name, kwargs))
    return (name, kwargs)


class FakeModel:
    def parameters(self):
        return ["w", "b"]


class FakeOptimizer:
    def __init__(self, params, lr=0.1):
        self.params, self.lr = list(params), lr


def build_optimizer(model, target, kwargs, **options):
    calls.append(("build_optimizer", options))
    return target(model.parameters(), **kwargs)


def loaders(size=1):
    calls.append(("loaders", {"size": size}))
    return {"train": ["t"] * size, "valid": ["v"] * size}
'''


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A module `cfg_parts` next to the config, imported by name."""
    (tmp_path / "cfg_parts.py").write_text(PARTS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import cfg_parts

    yield cfg_parts
    sys.modules.pop("cfg_parts", None)


def test_targets_are_called_only_when_the_runtime_calls_them(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text(
        "def make_model(width): ...\n\n\nclass Loss: ...\n\n\nclass Optimizer:\n"
        "    def __init__(self, params, lr): ...\n\n\ndef loader(): ...\n\n\n"
        "raise RuntimeError('imported')\n", encoding="utf-8")
    experiment = load(tmp_path, """
        experiment: demo
        model: {_target_: boom.make_model, width: 3}
        criterion: {_target_: boom.Loss}
        optimizer: {_target_: boom.Optimizer, lr: 0.1}
        stages:
          train:
            loaders: {train: {_target_: boom.loader}, valid: {_target_: boom.loader}}
        """, static=False)
    assert "boom" not in sys.modules
    assert isinstance(experiment.components["model"], Target)
    assert isinstance(experiment.components["optimizer"], OptimizerFactory)
    assert sg.compile(experiment).ok


def test_nested_targets_are_instantiated_depth_first(parts: Any) -> None:
    value = instantiate({"_target_": "cfg_parts.record", "name": "outer",
                         "inner": [{"_target_": "cfg_parts:record", "name": "inner"}]})
    assert parts.calls == [("inner", {}), ("outer", {"inner": [("inner", {})]})]
    assert value == ("outer", {"inner": [("inner", {})]})


def test_the_optimizer_gets_the_model_parameters(parts: Any, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    monkeypatch.setattr(factories, "BUILD_OPTIMIZER", "cfg_parts.no_such_function")
    optimizer = OptimizerFactory("cfg_parts.FakeOptimizer", {"lr": 0.5})(parts.FakeModel())
    assert (optimizer.params, optimizer.lr) == (["w", "b"], 0.5)
    with pytest.raises(RuntimeError, match=r"no_bias_weight_decay need cfg_parts\.no_such"):
        OptimizerFactory("cfg_parts.FakeOptimizer", {},
                         {"no_bias_weight_decay": True})(parts.FakeModel())
    # With stagegraph's optimizer options, the runtime's build_optimizer builds it.
    monkeypatch.setattr(factories, "BUILD_OPTIMIZER", "cfg_parts.build_optimizer")
    options = {"no_bias_weight_decay": True, "layerwise_params": None}
    optimizer = OptimizerFactory("cfg_parts.FakeOptimizer", {"lr": 0.2}, options)(
        parts.FakeModel())
    assert optimizer.lr == 0.2 and parts.calls == [("build_optimizer",
                                                    {"no_bias_weight_decay": True})]


def test_a_loader_factory_is_called_once_per_stage(tmp_path: Path, parts: Any) -> None:
    experiment = load(tmp_path, """
        experiment: demo
        loaders: {_target_: cfg_parts.loaders, size: 2}
        stages:
          train: {}
          infer: {loaders: {_target_: cfg_parts.loaders, _names_: [valid]}}
        """)
    train, infer = experiment.stages
    assert list(train.loaders) == ["train", "valid"] and list(infer.loaders) == ["valid"]
    loader: NamedLoader = train.loaders["valid"]
    assert loader() == ["v", "v"] and train.loaders["train"]() == ["t", "t"]
    assert loader() == ["v", "v"]  # every loader taken: the next one calls the factory again
    assert parts.calls == [("loaders", {"size": 2}), ("loaders", {"size": 2})]


def test_built_in_callbacks_are_made_and_their_mistakes_located(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        stages:
          train:
            callbacks:
              acc: {_target_: AccuracyCalback}
              early: {_target_: EarlyStoppingCallback, patiense: 3}
              top: {_target_: AccuracyCallback, topk: [0]}
              dotted: {_target_: stagegraph.runtime.callbacks.NoSuch}
        """)
    assert first_lines(found) == [
        "exp.yaml:5:23: error[SF812] there is no built-in callback 'AccuracyCalback'. Did you "
        "mean 'AccuracyCallback'?",
        "exp.yaml:6:48: error[SF811] EarlyStoppingCallback takes no argument 'patiense'. Did "
        "you mean 'patience'?",
        "exp.yaml:7:23: error[SF812] AccuracyCallback(...) cannot be made with these arguments: "
        "ValueError: topk must hold ints >= 1, not [0]",
        "exp.yaml:8:26: error[SF812] cannot import 'stagegraph.runtime.callbacks.NoSuch': "
        "'stagegraph.runtime.callbacks.NoSuch': 'stagegraph.runtime.callbacks' has no 'NoSuch'",
    ]


def test_a_component_target_needs_a_module(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        experiment: demo
        model: {_target_: make_model}
        stages: {train: {}}
        """)
    assert first_lines(found) == [
        "exp.yaml:2:19: error[SF810] _target_ 'make_model' names no module: write "
        "pkg.module.Name"]


def test_a_stagegraph_handler_is_made_with_its_arguments(tmp_path: Path) -> None:
    experiment = load(tmp_path, """
        experiment: demo
        handler: {_target_: stagegraph.SupervisedHandler, input_key: images}
        stages: {train: {}}
        """)
    assert isinstance(experiment.handler, SupervisedHandler)
    assert experiment.handler.input_key == "images"


USER_CALLBACK = '''
import stagegraph as sg


class Reporter(sg.Callback):
    order = sg.CallbackOrder.Logging
    after = ("accuracy",)

    def __init__(self, every: int = 1, **declarations):
        super().__init__(**declarations)
        if every < 1:
            raise ValueError(f"every must be 1 or more, not {every}")
        self.every = every

    def on_epoch_end(self, runner):
        print(runner.epoch_metrics["valid_accuracy"])
'''

CONFIG = """
    experiment: demo
    model: {_target_: mod.make}
    criterion: {_target_: mod.make}
    optimizer: {_target_: mod.make}
    stages:
      train:
        loaders: {train: {_target_: mod.loader}, valid: {_target_: mod.loader}}
        callbacks:
          accuracy: {_target_: AccuracyCallback}
          reporter: {_target_: my_callbacks.Reporter, every: 2, node: master}
    """


MOD = "def make(*args, **kwargs): ...\n\n\ndef loader(): ...\n"


def test_a_user_callback_stands_in_statically_and_is_imported_to_run(tmp_path: Path) -> None:
    (tmp_path / "my_callbacks.py").write_text(USER_CALLBACK.lstrip("\n"), encoding="utf-8")
    (tmp_path / "mod.py").write_text(MOD, encoding="utf-8")
    static = load(tmp_path, CONFIG)
    assert "my_callbacks" not in sys.modules
    imported = load(tmp_path, CONFIG, static=False)
    assert "my_callbacks" in sys.modules
    sys.modules.pop("my_callbacks")
    sys.modules.pop("mod", None)
    plans = [sg.compile(e).stage("train").callback("reporter") for e in (static, imported)]
    assert plans[0] == plans[1]
    assert plans[0].type == "my_callbacks.Reporter" and plans[0].node == "master"
    assert plans[0].events == ("on_epoch_end",) and plans[0].after == ("accuracy",)
    # What its code reads is inferred from the source, where the stand-in points.
    assert [(a.key, a.where) for a in plans[0].inferred] == [
        ("epoch_metric.valid_accuracy", "my_callbacks.py:15")]
    assert static.stages[0].callbacks["reporter"].every == 2


def test_a_user_callback_that_cannot_be_read_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "my_callbacks.py").write_text(
        "import stagegraph as sg\nReporter = type('Reporter', (sg.Callback,), {})\n",
        encoding="utf-8")
    (tmp_path / "mod.py").write_text(MOD, encoding="utf-8")
    experiment = load(tmp_path, CONFIG)
    assert first_lines([str(n).replace(f"{tmp_path}/", "") for n in experiment.notes]) == [
        "exp.yaml:10:28: warning[SF814] the declarations of my_callbacks.Reporter cannot be "
        "read from its source, so validate and plan treat it as declaring nothing"]


def test_a_user_callback_that_cannot_be_imported_or_made(tmp_path: Path) -> None:
    (tmp_path / "my_callbacks.py").write_text(USER_CALLBACK.lstrip("\n"), encoding="utf-8")
    try:
        found = problems(tmp_path, """
            experiment: demo
            stages:
              train:
                callbacks:
                  x: {_target_: nowhere.X}
                  reporter: {_target_: my_callbacks.Reporter, every: 0}
            """, static=False)
    finally:
        sys.modules.pop("my_callbacks", None)
    assert first_lines(found) == [
        "exp.yaml:5:21: error[SF810] no module named 'nowhere' (in nowhere.X).",
        "exp.yaml:6:28: error[SF813] my_callbacks.Reporter(...) raised ValueError: every must "
        "be 1 or more, not 0",
    ]


def test_a_built_in_callback_that_needs_its_arguments_made_stands_in(tmp_path: Path) -> None:
    if importlib.util.find_spec("torchmetrics") is None:  # read from source, never imported
        pytest.skip("torchmetrics is not installed")
    experiment = load(tmp_path, """
        experiment: demo
        stages:
          train:
            callbacks:
              f1:
                _target_: TorchMetricsCallback
                metric: {_target_: torchmetrics.classification.MulticlassF1Score, num_classes: 3}
                writes: [metric.f1, loader_metric.f1]
        """)
    assert [(n.code, n.line) for n in experiment.notes] == [("SF814", 6)]
    callback = sg.compile(experiment).stage("train").callback("f1")
    assert callback.type == "stagegraph.runtime.callbacks.metrics.TorchMetricsCallback"
    assert callback.writes == ("metric.f1", "loader_metric.f1")
    assert callback.events == ("on_loader_start", "on_batch_end", "on_loader_end")


def test_fast_path_is_read_at_the_top_in_defaults_and_in_stages(tmp_path: Path) -> None:
    exp = load(tmp_path, """
        experiment: fp
        fast_path: false
        stages:
          a: {}
          b: {fast_path: true}
    """)
    assert exp.fast_path is False
    assert [s.params["fast_path"] for s in exp.stages] == [False, True]
    exp = load(tmp_path, """
        experiment: fp
        defaults: {fast_path: false}
        stages: {a: {}, b: {fast_path: true}}
    """)
    assert [s.params["fast_path"] for s in exp.stages] == [False, True]
    assert problems(tmp_path, "experiment: fp\nfast_path: no\nstages: {a: {}}\n")[0].startswith(
        "exp.yaml:2:12: error[SF803]")
