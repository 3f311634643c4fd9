"""Which plan runs: a run without a logdir refuses callbacks that need one, before building."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from trace_helpers import loaders

import stagegraph as sg
from stagegraph.compiler.diagnostics import Diagnostic, Location, Severity
from stagegraph.runtime import PlanError
from stagegraph.runtime.resolve import missing_logdir


class WritesFiles(sg.Callback):
    """Declares that it needs a logdir, as the built-in file writers do."""

    needs = ("logdir",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.logdirs: list[Path | None] = []

    def on_stage_end(self, runner: Any) -> None:
        self.logdirs.append(runner.logdir)


def experiment(built: list[str], *, lints: dict[str, str] | None = None,
               stage_lints: dict[str, str] | None = None,
               writer: sg.Callback | None = None) -> sg.Experiment:
    def model() -> nn.Module:
        built.append("model")
        return nn.Linear(3, 2)

    def train_loader() -> Any:
        built.append("loader")
        return loaders()["train"]

    exp = sg.Experiment("logdir", model=model, criterion=nn.CrossEntropyLoss, lints=lints,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    exp.add_stage("train", loaders={"train": train_loader, "valid": loaders()["valid"]},
                  callbacks={"files": writer or WritesFiles()}, lints=stage_lints)
    return exp


def compiled(exp: sg.Experiment, **kwargs: Any) -> sg.ExecutionPlan:
    return sg.compile(exp, device="cpu", verbose=False, **kwargs)


def refusal(exp: sg.Experiment) -> PlanError:
    with pytest.raises(PlanError) as info:
        sg.Runner(compiled(exp))
    return info.value


def test_a_callback_that_needs_a_logdir_is_refused_before_anything_is_built() -> None:
    built: list[str] = []
    err = refusal(experiment(built))
    assert built == []
    assert [(d.code, d.severity, str(d.location)) for d in err.diagnostics] == [
        ("SF510", Severity.error, "stage 'train' > callback 'files'")]
    text = str(err)
    assert text.splitlines()[0] == ("the plan for experiment 'logdir' needs a logdir and has "
                                    "none, so nothing was built or run:")
    assert "'files'" in text and "writes files under the run's logdir" in text
    hint = err.diagnostics[0].hint
    assert "--logdir DIR" in hint and "logdir=" in hint and "Runner" in hint
    with pytest.raises(PlanError, match="SF510"):
        sg.run(experiment(built), device="cpu", verbose=False)
    assert built == []


def test_a_logdir_given_to_the_runner_or_to_run_is_enough(tmp_path: Path) -> None:
    built: list[str] = []
    writer = WritesFiles()
    sg.Runner(compiled(experiment(built, writer=writer)), logdir=tmp_path / "a").run()
    sg.run(experiment(built, writer=writer), device="cpu", verbose=False, logdir=tmp_path / "b")
    assert writer.logdirs == [tmp_path / "a", tmp_path / "b"]


@pytest.mark.parametrize("where", ["experiment", "stage", "callback"])
def test_sf510_lowered_to_allow_or_warning_runs_without_a_logdir(where: str) -> None:
    for level in ("allow", "warning"):
        built: list[str] = []
        lints = {"SF510": level}
        writer = WritesFiles(lints=lints if where == "callback" else None)
        exp = experiment(built, writer=writer, lints=lints if where == "experiment" else None,
                         stage_lints=lints if where == "stage" else None)
        sg.Runner(compiled(exp)).run()
        assert writer.logdirs == [None] and built == ["model", "loader"]


def test_a_note_from_the_compiler_is_refused_too() -> None:
    """The compiler's own SF510 note (level info, no logdir) counts, declared ``needs`` or not."""
    built: list[str] = []
    exp = experiment(built, writer=sg.Callback())
    plan = compiled(exp)
    note = Diagnostic(code="SF510", severity=Severity.info,
                      location=Location(stage="train", callback="files"),
                      message="callback 'files' writes files; the run needs a logdir")
    noted = plan.model_copy(update={"diagnostics": (*plan.diagnostics, note)})
    assert noted.experiment_object is exp
    assert [(d.message, d.severity) for d in missing_logdir(noted)] == [
        ("callback 'files' writes files; the run needs a logdir", Severity.error)]
    with pytest.raises(PlanError, match="SF510"):
        sg.Runner(noted)
    assert built == []
    assert missing_logdir(compiled(exp)) == ()
    assert missing_logdir(noted.model_copy(update={"logdir": "runs"})) == ()
