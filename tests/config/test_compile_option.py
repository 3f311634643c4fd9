"""``compile:`` in a config file: at the top (every stage), in defaults: and in a stage."""

from __future__ import annotations

from pathlib import Path

from config_helpers import first_lines, load, problems

import stagegraph as sg
from stagegraph.compiler.plan import CompilePlan
from stagegraph.config.positions import locate

TEXT = """
    experiment: demo
    compile: {backend: eager}
    model: {_target_: torch.nn.Identity}
    criterion: {_target_: torch.nn.CrossEntropyLoss}
    optimizer: {_target_: torch.optim.SGD, lr: 0.1}
    loaders: {train: {_target_: builtins.list}, valid: {_target_: builtins.list}}
    stages:
      train: {}
      tune: {compile: false}
      last: {compile: {backend: aot_eager, dynamic: true}}
    """


def test_compile_reaches_the_plan(tmp_path: Path) -> None:
    plan = sg.compile(load(tmp_path, TEXT))
    assert [s.compile for s in plan.stages] == [
        CompilePlan(backend="eager"), None, CompilePlan(backend="aot_eager", dynamic=True)]


def test_a_misspelt_option_is_located_with_a_did_you_mean(tmp_path: Path) -> None:
    found = problems(tmp_path, TEXT.replace("{backend: eager}", "{backend: eager, fulgraph: 1}"))
    assert first_lines(found) == [
        "exp.yaml:2:27: error[SF804] unknown key 'fulgraph' in compile. Did you mean "
        "'fullgraph'?"]


def test_mode_and_options_together_is_sf530_at_the_value(tmp_path: Path) -> None:
    experiment = load(tmp_path, TEXT.replace("{backend: aot_eager, dynamic: true}",
                                             "{mode: max-autotune, options: {a: 1}}"))
    located = [d for d in locate(sg.compile(experiment).diagnostics, experiment.document)
               if d.code == "SF530"]
    assert [str(d).splitlines()[0].replace(f"{tmp_path}/", "") for d in located] == [
        "exp.yaml:10:19: error[SF530] stage 'last' > param 'compile': compile gives both "
        "'mode' and 'options', which torch.compile refuses"]
