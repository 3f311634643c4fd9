"""A logdir between runs: finished and unfinished runs, ``overwrite``, the lock, file modes.

In process, with `Stop` standing in for a kill (test_resume_logdir_kill.py does the same with
SIGKILLed processes): a run from the beginning never deletes an earlier run before its own first
checkpoint is durable, refuses to replace an unfinished one unless told to, and a run holds the
logdir's lock while it runs.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from resume_helpers import assert_same, build, outcome, plan, run
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime import LogdirError, ResumeWarning, RunError, StagegraphWarning
from stagegraph.runtime.callbacks import PredictionWriter
from stagegraph.runtime.lock import LOCK_FILE, LogdirLock
from stagegraph.runtime.resume.logdir import SUPERSEDED, entries_of

# A run that replaces another says so: expected here, and asserted where it matters.
pytestmark = pytest.mark.filterwarnings("ignore::stagegraph.runtime.ResumeWarning")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return outcome(run(tmp_path_factory.mktemp("reference")))


def caught(**runner: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = run(**runner)
    return result, [str(w.message) for w in seen if isinstance(w.message, StagegraphWarning)]


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- finished and unfinished runs -------------------------------------------------------------
def test_a_finished_run_is_replaced_once_the_new_run_has_a_checkpoint(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")  # not a folder the run writes: left alone
    with pytest.warns(ResumeWarning) as seen:
        again = run(tmp_path)
    (message,) = [str(w.message) for w in seen]
    assert re.fullmatch(
        re.escape(f"log directory {str(tmp_path)!r} held a finished run (stage 'c' after "
                  "epoch 2, global epoch 6); this run replaces it: its files are moved to "
                  f"{tmp_path / SUPERSEDED}/") + r"\d{8}-\d{6}Z" +
        re.escape(" and deleted once this run's first checkpoint is saved"), message), message
    assert_same(reference, outcome(again))
    assert not (tmp_path / SUPERSEDED).exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_finished_run_is_kept_when_the_new_one_stops_before_its_first_checkpoint(
        tmp_path: Path) -> None:
    run(tmp_path)
    before = files(tmp_path)
    assert run(tmp_path, ("on_stage_start", "a")) is None
    (aside,) = (tmp_path / SUPERSEDED).iterdir()
    assert files(aside) == before  # every file of the finished run, intact
    assert not list((tmp_path / "checkpoints" / "resume").glob("epoch-*"))


def test_an_unfinished_run_refuses_a_fresh_start(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 4))
    before = files(tmp_path)
    with pytest.raises(LogdirError) as info:
        sg.Runner(plan(build(), tmp_path)).run()
    assert info.value.message == (
        f"log directory {str(tmp_path)!r} holds an unfinished run: its latest checkpoint is "
        "epoch-000003.pth (stage 'b' after epoch 1, global epoch 3); not starting over")
    assert info.value.hint == (
        "pass --resume to continue it, or --overwrite to start over (resume=True, overwrite=True "
        f"in Python): the old run is then kept in {tmp_path / SUPERSEDED}/ until the new run's "
        "first checkpoint is saved")
    assert files(tmp_path) == before  # nothing moved, nothing deleted


def test_overwrite_stopped_before_its_first_checkpoint_then_resume_brings_the_old_run_back(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    run(tmp_path, ("epoch", 4))
    assert run(tmp_path, ("epoch", 1), overwrite=True) is None  # stopped in its first epoch
    (aside,) = (tmp_path / SUPERSEDED).iterdir()
    assert (aside / "checkpoints" / "resume" / "epoch-000003.pth").is_file()
    with pytest.raises(LogdirError, match=r"set aside in .* by a run that stopped before its "
                                          "first checkpoint: its latest checkpoint is "
                                          "epoch-000003.pth"):
        sg.Runner(plan(build(), tmp_path)).run()  # still unfinished: still refused
    resumed, seen = caught(logdir=tmp_path, resume=True)
    assert any(m.startswith(f"brought back the run set aside in {aside}") for m in seen)
    assert resumed.resumed_from == tmp_path / "checkpoints" / "resume" / "epoch-000003.pth"
    assert_same(reference, outcome(resumed))
    assert not (tmp_path / SUPERSEDED).exists()


def test_overwrite_and_resume_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pass one of them"):
        sg.Runner(plan(build(), tmp_path), resume=True, overwrite=True)


def test_resuming_from_elsewhere_into_a_logdir_with_an_unfinished_run(
        tmp_path: Path) -> None:
    run(tmp_path / "src", ("epoch", 4))
    run(tmp_path / "new", ("epoch", 3))
    with pytest.raises(LogdirError, match="holds an unfinished run") as info:
        sg.Runner(plan(build(), tmp_path / "new"), resume=str(tmp_path / "src")).run()
    assert "or pass --overwrite (overwrite=True) to replace it" in info.value.hint
    resumed = run(tmp_path / "new", resume=str(tmp_path / "src"), overwrite=True)
    assert resumed.resumed_from is not None and not (tmp_path / "new" / SUPERSEDED).exists()


def test_the_folders_a_run_writes_come_from_its_plan() -> None:
    exp = build()
    exp.stages[2].callbacks["predictions"] = PredictionWriter(folder="preds/x")
    names = entries_of(sg.compile(exp, device="cpu", verbose=False, logdir="somewhere"))
    assert names == {"checkpoints", "fast_path.json", "logs", "preds"}


def test_an_exception_checkpoint_goes_once_its_stage_completes(tmp_path: Path) -> None:
    run(tmp_path, ("epoch", 4))  # fails in stage b, which has the checkpoint callback
    exception = tmp_path / "checkpoints" / "b.exception.pth"
    assert exception.exists()
    run(tmp_path, ("epoch", 6), resume=True)  # b completes, then c fails (no checkpoint cb)
    assert not exception.exists()


# --- the lock ---------------------------------------------------------------------------------
class LockProbe(sg.Callback):
    """Records, during the run, whether another taker of the logdir's lock is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def on_epoch_start(self, runner: Any) -> None:
        holder = json.loads((runner.logdir / LOCK_FILE).read_text())
        self.seen.append(f"{holder['pid']} {holder['host']}")
        try:
            LogdirLock(runner.logdir).acquire()  # a new open file: flock refuses it
        except LogdirError as err:
            self.seen.append(str(err).splitlines()[0])


def test_the_run_holds_the_lock_and_releases_it(tmp_path: Path) -> None:
    probe = LockProbe()
    sg.Runner(plan(build(probe=probe), tmp_path)).run()
    assert probe.seen[0] == f"{os.getpid()} {socket.gethostname()}"
    assert probe.seen[1].startswith(f"log directory {str(tmp_path)!r} is in use by another "
                                    f"run: process {os.getpid()} on host "
                                    f"{socket.gethostname()!r}, started ")
    assert not (tmp_path / LOCK_FILE).exists()
    with pytest.raises(RunError):  # released after a failure too
        sg.Runner(plan(build(("epoch", 1), probe=probe), tmp_path), overwrite=True).run()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path: Path) -> None:
    stale = {"pid": 2**22 + 12345, "host": "elsewhere", "started": "2020-01-01T00:00:00+0000"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    _, seen = caught(logdir=tmp_path)
    assert seen == [f"took over the lock {tmp_path / LOCK_FILE} left by process {2**22 + 12345} "
                    "on host 'elsewhere', started 2020-01-01T00:00:00+0000, which no longer runs"]


# --- file modes -------------------------------------------------------------------------------
def tiny(logdir: Path) -> sg.ExecutionPlan:
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    exp = sg.Experiment("modes", seed=1, model=lambda: nn.Linear(4, 2),
                        criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    loaders = {"train": lambda: DataLoader(data, batch_size=4),
               "valid": lambda: DataLoader(data, batch_size=4)}
    exp.add_stage("train", num_epochs=1, loaders=loaders)
    exp.add_stage("infer", loaders={"infer": lambda: DataLoader(data, batch_size=4)},
                  callbacks={"predictions": PredictionWriter(format="csv")})
    return sg.compile(exp, device="cpu", verbose=False, logdir=str(logdir))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_and_folders_respect_the_umask(tmp_path: Path, umask: int) -> None:
    logdir = tmp_path / "run"
    previous = os.umask(umask)
    try:
        sg.Runner(tiny(logdir)).run()
    finally:
        os.umask(previous)
    made = {str(p.relative_to(logdir)): stat.S_IMODE(p.stat().st_mode)
            for p in logdir.rglob("*")}
    assert {"checkpoints/train.best.pth", "checkpoints/resume/epoch-000002.pth",
            "checkpoints/resume/latest.json", "checkpoints/resume/finished.json",
            "logs/train.csv", "predictions/infer_infer.csv"} <= set(made)
    for name, mode in made.items():
        expected = 0o777 & ~umask if (logdir / name).is_dir() else 0o666 & ~umask
        assert mode == expected, f"{name}: {oct(mode)}, expected {oct(expected)}"
