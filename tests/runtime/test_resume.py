"""Resuming in process: every stopping point, plan changes, damaged and missing checkpoints.

A `Stop` raised by a callback stands in for a kill here (the kill itself is tested with real
processes in test_resume_kill.py): the run fails, and a new runner built from a fresh experiment
resumes from the logdir.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from resume_helpers import (
    GLOBAL_EPOCHS,
    Stop,
    Tracker,
    assert_same,
    build,
    outcome,
    plan,
    run,
)
from torch import nn

import stagegraph as sg
from stagegraph.runtime import RunError
from stagegraph.runtime.errors import ResumeError, ResumeWarning
from stagegraph.runtime.resume import INDEX, RESUME_FORMAT, ResumeStore, load_checkpoint

POINTS = [*(("epoch", g) for g in range(2, GLOBAL_EPOCHS + 1)),
          ("on_stage_end", "a"), ("on_stage_start", "b"), ("on_stage_end", "b"),
          ("on_stage_end", "c")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return outcome(run(tmp_path_factory.mktemp("reference")))


def resume_dir(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints" / "resume"


def caught(**runner: Any) -> tuple[Any, list[ResumeWarning]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = run(**runner)
    return result, [w.message for w in seen if isinstance(w.message, ResumeWarning)]


@pytest.mark.parametrize("point", POINTS, ids=[f"{a}-{b}" for a, b in POINTS])
def test_stopped_anywhere_and_resumed_equals_the_uninterrupted_run(
        tmp_path: Path, point: tuple[str, Any], reference: dict[str, Any]) -> None:
    assert run(tmp_path, point) is None
    resumed = run(tmp_path, resume=True)
    assert resumed.resumed_from is not None
    assert_same(reference, outcome(resumed))


def test_resumed_twice_and_from_a_copied_logdir(tmp_path: Path,
                                                reference: dict[str, Any]) -> None:
    run(tmp_path / "one", ("epoch", 3))
    assert run(tmp_path / "one", ("epoch", 5), resume=True) is None
    shutil.copytree(tmp_path / "one", tmp_path / "moved")  # the plan's logdir path changes
    assert_same(reference, outcome(run(tmp_path / "moved", resume=True)))


def test_where_the_resumed_run_continues(tmp_path: Path) -> None:
    run(tmp_path, ("on_stage_end", "b"))
    runner = sg.Runner(plan(build(), tmp_path), resume=True)
    assert runner.resumed_from == resume_dir(tmp_path) / "epoch-000004.pth"
    assert runner.resume_position == ("stage 'b' after epoch 2 (the stage had finished), "
                                      "global epoch 4")
    log: list[str] = []
    exp = build(recorder=_Recorder(log))  # a plan change, allowed: it only records
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResumeWarning)
        sg.Runner(plan(exp, tmp_path), resume=True, allow_plan_change=True).run()
    assert log[:4] == ["experiment_start", "stage_start b 2", "stage_end b", "stage_start c 0"]


class _Recorder(sg.Callback):
    scope = sg.CallbackScope.experiment

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def on_experiment_start(self, runner: Any) -> None:
        self.log.append("experiment_start")

    def on_stage_start(self, runner: Any) -> None:
        self.log.append(f"stage_start {runner.stage_name} {runner.epoch}")

    def on_stage_end(self, runner: Any) -> None:
        self.log.append(f"stage_end {runner.stage_name}")


# --- the checkpoint folder --------------------------------------------------------------------
def test_layout_index_and_the_previous_checkpoint_kept(tmp_path: Path) -> None:
    run(tmp_path)
    folder = resume_dir(tmp_path)
    index = json.loads((folder / INDEX).read_text())
    assert index["latest"] == "epoch-000006.pth"
    assert [e["file"] for e in index["checkpoints"]] == ["epoch-000006.pth", "epoch-000005.pth"]
    blobs = sorted({b for e in index["checkpoints"] for b in e["blobs"]})
    assert sorted(p.name for p in folder.iterdir()) == [
        *blobs, "epoch-000005.pth", "epoch-000006.pth", "finished.json", INDEX]
    entry = index["checkpoints"][0]
    assert entry["bytes"] == (folder / "epoch-000006.pth").stat().st_size
    assert (entry["stage"], entry["epoch"], entry["global_epoch"]) == ("c", 2, 6)
    raw = torch.load(folder / "epoch-000006.pth", weights_only=True)
    state = torch.load(folder / raw["state"]["file"], weights_only=True)  # c.last.pth, linked
    assert (folder / raw["state"]["file"]).samefile(tmp_path / "checkpoints" / "c.last.pth")
    assert list(raw["files"]) == ["checkpoints/c.best.pth"]
    assert set(state["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    data = load_checkpoint(folder / "epoch-000006.pth")
    assert data["format"] == RESUME_FORMAT and data["stage"] == "c"
    assert set(data["resume"]) == {"stage", "epoch", "stage_done", "is_best_valid", "check",
                                   "plan", "config", "rng", "loaders", "shared_model",
                                   "carried", "kept_optimizer"}
    assert data["resume"]["config"] is None  # an experiment written in Python has none
    assert set(data["resume"]["rng"]) >= {"python", "numpy", "torch"}
    assert list(data["resume"]["loaders"]) == ["train"]  # the loader with its own generator
    assert data["callbacks"]["tracker"]["batches"] == 6 * 3  # 6 epochs (b stopped after 2 of 3)


def test_a_fresh_run_with_overwrite_sets_the_earlier_run_aside(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 4))
    stale = resume_dir(tmp_path) / ".epoch-000009.pth.abc.tmp"
    stale.write_bytes(b"half")
    _, seen = caught(logdir=tmp_path, point=("epoch", 2), overwrite=True)
    (message,) = [str(w) for w in seen]
    assert message.startswith(f"log directory {str(tmp_path)!r} held an unfinished run (stage "
                              "'b' after epoch 1, global epoch 3); this run replaces it: its "
                              f"files are moved to {tmp_path / '.superseded'}/")
    assert not stale.exists()
    assert not (tmp_path / ".superseded").exists()  # deleted after the new run's checkpoint
    assert [p.name for _, p in ResumeStore(resume_dir(tmp_path)).files()] == ["epoch-000001.pth"]


def test_the_exception_checkpoint_is_never_resumed_from(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 4))  # fails at the start of b's second epoch
    assert (tmp_path / "checkpoints" / "b.exception.pth").exists()
    runner = sg.Runner(plan(build(), tmp_path), resume=True)
    assert runner.resumed_from == resume_dir(tmp_path) / "epoch-000003.pth"


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(
        tmp_path: Path, damage: str, reference: dict[str, Any]) -> None:
    run(tmp_path, ("epoch", 5))
    latest = resume_dir(tmp_path) / "epoch-000004.pth"
    data = bytearray(latest.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray(b"not a checkpoint at all")
    latest.write_bytes(bytes(data))
    resumed, seen = caught(logdir=tmp_path, resume=True)
    assert resumed.resumed_from == resume_dir(tmp_path) / "epoch-000003.pth"
    assert len(seen) == 1 and str(seen[0]).startswith(
        f"warning[SF602] experiment: skipped checkpoint {latest}: it ")
    assert str(seen[0]).endswith("; falling back to the one before it")
    assert (latest.parent / "epoch-000004.pth.corrupt").exists()
    assert_same(reference, outcome(resumed))


def test_an_unreadable_index_is_not_needed(tmp_path: Path, reference: dict[str, Any]) -> None:
    run(tmp_path, ("epoch", 3))
    (resume_dir(tmp_path) / INDEX).write_text("{not json")
    resumed, seen = caught(logdir=tmp_path, resume=True)
    assert "is unreadable" in str(seen[0]) and "using the files alone" in str(seen[0])
    assert resumed.resumed_from == resume_dir(tmp_path) / "epoch-000002.pth"
    assert_same(reference, outcome(resumed))


def test_when_every_checkpoint_is_damaged_nothing_runs(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 4))
    for _, path in ResumeStore(resume_dir(tmp_path)).files():
        path.write_bytes(b"")
    with pytest.raises(ResumeError) as info:
        sg.Runner(plan(build(), tmp_path), resume=True)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "SF603"
    assert diagnostic.message.startswith("none of the 2 checkpoint(s) in ")
    assert "epoch-000003.pth is truncated or damaged: 0 bytes" in diagnostic.message


# --- what to resume from ----------------------------------------------------------------------
def test_nothing_to_resume_from_starts_over_with_a_warning(tmp_path: Path,
                                                           reference: dict[str, Any]) -> None:
    resumed, seen = caught(logdir=tmp_path, resume=True)
    assert [str(w) for w in seen] == [
        f"warning[SF604] experiment: there is no checkpoint to resume from in "
        f"{resume_dir(tmp_path)}: starting from the beginning"]
    assert resumed.resumed_from is None
    assert_same(reference, outcome(resumed))


def test_resume_from_a_named_file_or_another_logdir(tmp_path: Path,
                                                    reference: dict[str, Any]) -> None:
    run(tmp_path / "old", ("epoch", 5))
    older = resume_dir(tmp_path / "old") / "epoch-000003.pth"
    resumed, seen = caught(logdir=tmp_path / "old", resume=str(older))
    assert resumed.resumed_from.name == older.name  # set aside, then deleted
    assert not resumed.resumed_from.exists() and not (tmp_path / "old" / ".superseded").exists()
    assert [str(w) for w in seen] == [
        f"resuming from epoch-000003.pth, older than the latest checkpoint of "
        f"{str(tmp_path / 'old')!r} (epoch-000004.pth): that run is set aside in "
        f"{resumed.resumed_from.parents[2]} and deleted once this run saves its first "
        "checkpoint; until then --resume (without a path) goes back to it"]
    assert_same(reference, outcome(resumed))
    run(tmp_path / "src", ("epoch", 4))
    resumed = run(tmp_path / "new", resume=str(tmp_path / "src"))
    assert resumed.resumed_from == resume_dir(tmp_path / "src") / "epoch-000003.pth"
    logs = {k: v for k, v in reference["logs"].items() if k != "a.csv"}  # a ran in src only
    assert_same({**reference, "logs": logs}, outcome(resumed))


class StopAtBatch(sg.Callback):
    """Raises `Stop` at the start of global batch ``step`` (after a mid-epoch checkpoint)."""

    scope = sg.CallbackScope.experiment

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def on_batch_start(self, runner: Any) -> None:
        if runner.global_batch_step == self.step:
            raise Stop(f"batch {self.step}")


def test_resume_from_an_older_checkpoint_stopped_before_its_first_keeps_the_newer_one(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    """Nothing is deleted before newer state is durable: the run resumed from an older
    checkpoint dies before it saves one, and the newer state is all there to resume."""
    run(tmp_path, ("epoch", 6))
    names = ["epoch-000005.pth", "epoch-000004.pth"]
    assert [p.name for _, p in ResumeStore(resume_dir(tmp_path)).files()] == names
    logs = {p.name: p.read_bytes() for p in (tmp_path / "logs").iterdir()}
    older = resume_dir(tmp_path) / names[1]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        stopped = sg.Runner(plan(build(("epoch", 5)), tmp_path), resume=str(older))
        with pytest.raises(RunError):
            stopped.run()
    (aside,) = (tmp_path / ".superseded").iterdir()
    assert stopped.resumed_from == aside / "checkpoints" / "resume" / names[1]
    said = [str(w.message) for w in seen if isinstance(w.message, ResumeWarning)]
    assert said == [f"resuming from epoch-000004.pth, older than the latest checkpoint of "
                    f"{str(tmp_path)!r} (epoch-000005.pth): that run is set aside in {aside} "
                    "and deleted once this run saves its first checkpoint; until then --resume "
                    "(without a path) goes back to it"]
    assert [p.name for _, p in ResumeStore.of_logdir(aside).files()] == names
    assert {p.name: p.read_bytes() for p in (aside / "logs").iterdir()} == logs  # as they were
    resumed, seen = caught(logdir=tmp_path, resume=True)
    assert resumed.resumed_from == resume_dir(tmp_path) / names[0]
    assert [str(w).split(":")[0] for w in seen] == [f"brought back the run set aside in {aside}"]
    assert_same(reference, outcome(resumed))


def test_resume_from_an_older_checkpoint_deletes_the_newer_once_it_saves_one(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    run(tmp_path, ("epoch", 6))
    first = load_checkpoint(resume_dir(tmp_path) / "epoch-000004.pth")["counters"][
        "global_batch_step"]
    try:  # a mid-epoch checkpoint after the first batch of epoch 5, then stopped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SF601: the callback that stops it is added
            sg.Runner(plan(build(None, stop=StopAtBatch(first + 2)), tmp_path),
                      checkpoint_every=1, allow_plan_change=True,
                      resume=str(resume_dir(tmp_path) / "epoch-000004.pth")).run()
    except RunError as err:
        assert isinstance(err.__cause__, Stop), err
    assert not (tmp_path / ".superseded").exists()
    store = ResumeStore(resume_dir(tmp_path))
    newest = f"epoch-000005-step-{first + 1:09d}.pth"
    assert [p.name for _, p in store.files()] == [newest]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SF601: and removed
        resumed = run(tmp_path, resume=True, allow_plan_change=True)
    assert resumed.resumed_from == resume_dir(tmp_path) / newest
    assert_same(reference, outcome(resumed))
    assert (tmp_path / "checkpoints" / "b.best.pth").is_file()  # an earlier stage's files kept


@pytest.mark.parametrize("case", ["no logdir", "missing", "empty folder", "not a resume file",
                                  "damaged file"])
def test_cannot_resume_says_why(tmp_path: Path, case: str) -> None:
    run(tmp_path / "run", ("epoch", 3))
    target: Any = True
    logdir: Path | None = tmp_path / "run"
    if case == "no logdir":
        logdir = None
    elif case == "missing":
        target = str(tmp_path / "nowhere")
    elif case == "empty folder":
        (tmp_path / "empty").mkdir()
        target = str(tmp_path / "empty")
    elif case == "not a resume file":
        target = str(tmp_path / "run" / "checkpoints" / "a.last.pth")
    else:
        target = resume_dir(tmp_path / "run") / "epoch-000002.pth"
        target.write_bytes(target.read_bytes()[:100])
    exp = build()
    if logdir is None:  # the checkpoint callback needs a logdir: let it run without, to get here
        exp.lints = {"SF510": "allow"}
    compiled = sg.compile(exp, device="cpu", verbose=False,
                          logdir=None if logdir is None else str(logdir))
    with pytest.raises(ResumeError) as info:
        sg.Runner(compiled, resume=target)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "SF603" and diagnostic.hint
    expected = {"no logdir": "resume=True looks for checkpoints in the logdir",
                "missing": "does not exist", "empty folder": "holds no resume checkpoint",
                "not a resume file": "is not a resume checkpoint (format "
                                     "'stagegraph.checkpoint/1'",
                "damaged file": "is truncated or damaged"}[case]
    assert expected in diagnostic.message


# --- plan changes -----------------------------------------------------------------------------
def changed(**stage_b: Any) -> sg.Experiment:
    exp = build()
    exp.stages[1].params.update(stage_b)
    return exp


def test_a_changed_plan_is_refused_naming_each_change(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 4))
    exp = changed(num_epochs=5)
    exp.add_stage("d", loaders=exp.stages[0].loaders,
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    with pytest.raises(ResumeError) as info:
        sg.Runner(plan(exp, tmp_path), resume=True)
    assert str(info.value).startswith(
        f"the plan changed since checkpoint {resume_dir(tmp_path) / 'epoch-000003.pth'} was "
        "written (2 change(s)); not resuming:")
    assert [str(d).splitlines()[0] for d in info.value.diagnostics] == [
        "error[SF601] stage 'd': stage added",
        "error[SF601] stage 'b' > param 'num_epochs': changed from 3 to 5"]
    assert "--allow-plan-change" in info.value.diagnostics[0].hint


def test_an_allowed_plan_change_is_named_and_the_run_continues(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 4))
    exp = changed(num_epochs=5)
    exp.stages[0].callbacks["late"] = Tracker()  # a callback that did not exist: starts fresh
    del exp.stages[0].callbacks["noise"]  # its saved state is ignored
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runner = sg.Runner(plan(exp, tmp_path), resume=True, allow_plan_change=True).run()
    messages = [str(w.message) for w in seen if isinstance(w.message, ResumeWarning)]
    assert "warning[SF601] stage 'b' > callback 'late': callback added (resume_helpers.Tracker) "\
           "(ignored: resuming anyway)" in messages
    assert "warning[SF601] stage 'b' > callback 'noise': callback removed " \
           "(resume_helpers.Noise) (ignored: resuming anyway)" in messages
    assert "warning[SF601] stage 'b' > param 'num_epochs': changed from 3 to 5 (ignored: " \
           "resuming anyway)" in messages
    assert runner.global_epoch == 6 and runner.callbacks["late"].batches == 3 + 6  # b2, c1-2


def test_quiet_and_check_runs(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 3))
    loud = sg.compile(build(), device="cpu", verbose=True, logdir=str(tmp_path))
    assert sg.Runner(loud, resume=True).resumed_from is not None  # the console is not a change
    with pytest.raises(ResumeError, match=r"param 'check': check run was False, is True"):
        sg.Runner(plan(build(), tmp_path), resume=True, check=True)


def test_a_model_that_changed_shape_says_so(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 2))
    exp = build()
    exp.components["model"] = lambda: nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 2))
    with pytest.raises(RunError) as info:
        sg.Runner(plan(exp, tmp_path), resume=True).run()
    cause = info.value.__cause__
    assert isinstance(cause, ResumeError)
    (diagnostic,) = cause.diagnostics
    assert diagnostic.code == "SF605" and str(diagnostic.location) == "stage 'a'"
    assert diagnostic.message.startswith("the checkpoint's model state does not fit this run's "
                                         "model (RuntimeError: Error(s) in loading state_dict")


def test_a_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 2))
    data = load_checkpoint(resume_dir(tmp_path) / "epoch-000001.pth")
    assert json.loads(data["resume"]["plan"])["experiment"] == "small"


def test_an_experiment_model_first_built_after_the_resumed_stage(tmp_path: Path) -> None:
    """Stage 'own' trains a model of its own; the experiment's is built (seeded) in 'shared'."""

    def experiment(point: tuple[str, Any] | None = None) -> sg.Experiment:
        exp = build(point)
        exp.stages[0].components["model"] = lambda: nn.Linear(4, 2)
        make_train = exp.stages[0].loaders["train"]

        def train() -> Any:  # building it draws from the global generator
            torch.rand(3)
            return make_train()

        exp.stages[0].loaders["train"] = train
        return exp

    def final(logdir: Path, point: tuple[str, Any] | None = None, **options: Any) -> Any:
        try:
            return sg.Runner(plan(experiment(point), logdir), **options).run()
        except RunError:
            return None

    whole = final(tmp_path / "whole")
    assert final(tmp_path / "cut", ("epoch", 2)) is None
    resumed = final(tmp_path / "cut", resume=True)
    assert resumed.resumed_from is not None
    assert_same(outcome(whole), outcome(resumed))


class FreshHead(sg.Callback):
    """Re-initialises the last layer when its stage starts, as a finetuning stage might."""

    def on_stage_start(self, runner: Any) -> None:
        nn.init.normal_(runner.model[-1].weight)


def test_what_on_stage_start_does_to_the_model_is_not_done_twice(tmp_path: Path) -> None:
    def experiment(point: tuple[str, Any] | None = None) -> sg.Experiment:
        exp = build(point)
        exp.stages[2].callbacks = {"fresh_head": FreshHead()}
        return exp

    whole = sg.Runner(plan(experiment(), tmp_path / "whole")).run()
    with pytest.raises(RunError):
        sg.Runner(plan(experiment(("epoch", 6)), tmp_path / "cut")).run()
    resumed = sg.Runner(plan(experiment(), tmp_path / "cut"), resume=True).run()
    assert resumed.resume_position.startswith("stage 'c' after epoch 1")
    assert_same(outcome(whole), outcome(resumed))
