"""Files a resumed run depends on, and the checkpoint I/O path.

The best weights that ``load_best_on_stage_end`` reads back are part of what a resume checkpoint
verifies (a copy is kept beside it, its size and sha256 in it): a resume into another logdir
gets them, a damaged or missing best file is detected. Each epoch end serialises the state once
and gives every file its name from that one serialisation; the CSV history stays out of the
checkpoint; checkpoints load with ``mmap`` and are hashed in chunks.

Stage ``b`` of the helpers' experiment runs here with a learning rate that makes its first epoch
(global epoch 3) the best and its second (4) worse, so the weights loaded back at its end are not
the last ones.
"""

from __future__ import annotations

import os
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from resume_helpers import Stop, assert_same, build, outcome, plan

import stagegraph as sg
from stagegraph.runtime import RunError
from stagegraph.runtime.errors import ResumeError, ResumeWarning
from stagegraph.runtime.resume import CheckpointProblem, ResumeStore, load_checkpoint


def experiment(point: tuple[str, Any] | None = None, **extra: sg.Callback) -> sg.Experiment:
    exp = build(point, **extra)
    exp.stages[1].components["optimizer"] = lambda m: torch.optim.SGD(m.parameters(), lr=3.0,
                                                                      momentum=0.9)
    return exp


def run(logdir: Path, point: tuple[str, Any] | None = None, exp: sg.Experiment | None = None,
        **runner: Any) -> Any:
    try:
        return sg.Runner(plan(exp or experiment(point), logdir), **runner).run()
    except RunError as err:
        assert isinstance(err.__cause__, Stop), err
        return None


def caught(logdir: Path, **runner: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = run(logdir, **runner)
    return result, [str(w.message) for w in seen if isinstance(w.message, ResumeWarning)]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    logdir = tmp_path_factory.mktemp("whole")
    result = outcome(run(logdir))
    best = torch.load(logdir / "checkpoints" / "b.best.pth", weights_only=True)
    last = torch.load(logdir / "checkpoints" / "b.last.pth", weights_only=True)
    assert (best["counters"]["global_epoch"], last["counters"]["global_epoch"]) == (3, 4)
    return result


def same_weights(expected: dict[str, Any], runner: Any) -> bool:
    actual = runner.model.state_dict()
    return all(torch.equal(tensor, actual[key]) for key, tensor in expected["model"].items())


def flip(path: Path) -> None:
    """One byte changed in place, as a failing disk or an editor would (same inode)."""
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


# --- the best weights -------------------------------------------------------------------------
@pytest.mark.parametrize("point", [("epoch", 4), ("on_stage_end", "b")])
def test_resumed_into_a_new_logdir_the_best_weights_come_along(
        tmp_path: Path, point: tuple[str, Any], whole: dict[str, Any]) -> None:
    assert run(tmp_path / "old", point) is None
    resumed, seen = caught(tmp_path / "new", resume=str(tmp_path / "old"))
    assert resumed.resumed_from.parent == tmp_path / "old" / "checkpoints" / "resume"
    assert seen == []
    assert same_weights(whole, resumed)
    best = "checkpoints/b.best.pth"
    old = torch.load(tmp_path / "old" / best, weights_only=True)["model"]
    new = torch.load(tmp_path / "new" / best, weights_only=True)["model"]
    assert all(torch.equal(old[k], new[k]) for k in old)


def test_a_flipped_byte_in_the_best_file_is_detected(tmp_path: Path) -> None:
    assert run(tmp_path, ("on_stage_end", "b")) is None
    best = tmp_path / "checkpoints" / "b.best.pth"
    flip(best)
    with pytest.raises(ResumeError) as info:
        sg.Runner(plan(experiment(), tmp_path), resume=True)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "SF603"
    assert "epoch-000004.pth needs checkpoints/b.best.pth, which is damaged: its sha256 " \
           "checksum does not match" in diagnostic.message


def test_a_damaged_best_file_falls_back_to_a_checkpoint_before_it(
        tmp_path: Path, whole: dict[str, Any]) -> None:
    """Stopped in b's second epoch: the checkpoint of its first needs the damaged file, the
    checkpoint ending stage a does not; resuming from it runs b again."""
    assert run(tmp_path, ("epoch", 4)) is None
    flip(tmp_path / "checkpoints" / "b.best.pth")
    resumed, seen = caught(tmp_path, resume=True)
    assert resumed.resumed_from.name == "epoch-000002.pth"
    assert len(seen) == 1
    assert "epoch-000003.pth: it needs checkpoints/b.best.pth, which is damaged" in seen[0]
    assert_same(whole, outcome(resumed))


def test_a_missing_best_file_is_restored_from_the_copy_kept_with_the_checkpoint(
        tmp_path: Path, whole: dict[str, Any]) -> None:
    assert run(tmp_path, ("on_stage_end", "b")) is None
    best = tmp_path / "checkpoints" / "b.best.pth"
    best.unlink()
    resumed, seen = caught(tmp_path, resume=True)
    assert seen == [f"{best} is missing; restored from the copy kept with checkpoint "
                    "epoch-000004.pth"]
    assert_same(whole, outcome(resumed))


def test_where_files_cannot_be_linked_they_are_copied(
        tmp_path: Path, whole: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*args: Any, **kwargs: Any) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert run(tmp_path, ("on_stage_end", "b")) is None
    best = tmp_path / "checkpoints" / "b.best.pth"
    flip(best)  # the copy kept with the checkpoint is another file: it is intact
    resumed, seen = caught(tmp_path, resume=True)
    assert seen == [f"{best} is damaged: its sha256 checksum does not match; restored from "
                    "the copy kept with checkpoint epoch-000004.pth"]
    assert_same(whole, outcome(resumed))


class Meddle(sg.Callback):
    """Changes the stage's best file behind the checkpoint callback's back."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def on_epoch_start(self, runner: Any) -> None:
        best = Path(runner.logdir) / "checkpoints" / f"{runner.stage_name}.best.pth"
        if runner.epoch == 2:
            runner.checkpoint_writer.wait()  # the file of epoch 1 may still be being written
            if self.how == "delete":
                best.unlink()
            else:
                flip(best)


@pytest.mark.parametrize("how", ["delete", "flip"])
def test_a_best_file_changed_during_the_stage_fails_the_run_naming_it(
        tmp_path: Path, how: str) -> None:
    exp = experiment()
    exp.stages[1].callbacks["meddle"] = Meddle(how)
    with pytest.raises(RunError) as info:
        sg.Runner(plan(exp, tmp_path)).run()
    best = tmp_path / "checkpoints" / "b.best.pth"
    problem = "is missing" if how == "delete" else (
        "changed since this stage saved it (its sha256 checksum does not match)")
    assert str(info.value.__cause__) == (
        f"{best}, the best weights of stage 'b', {problem}, so load_best_on_stage_end cannot "
        "load them; put the file back, or resume the run from its last checkpoint (--resume), "
        "which keeps a copy of it")
    assert "callback 'checkpoint' (on_stage_end)" in str(info.value)


def test_a_stage_without_a_best_epoch_keeps_its_last_weights_and_says_so(tmp_path: Path) -> None:
    class NeverBest(sg.Callback):
        order = sg.CallbackOrder.Validation + 1

        def on_epoch_end(self, runner: Any) -> None:
            runner.is_best_valid = False

    exp = experiment()
    exp.stages[1].callbacks["never_best"] = NeverBest()
    exp.lints = {"SF517": "allow"}
    with pytest.warns(UserWarning, match=r"stage 'b' had no best epoch.*keeps the weights of its "
                                         r"last epoch"):
        run(tmp_path, exp=exp)
    assert not (tmp_path / "checkpoints" / "b.best.pth").exists()


class Notes(sg.Callback):
    """Writes a file in its stage's first epoch and reads it back when the stage ends."""

    def __init__(self) -> None:
        super().__init__()
        self.read = ""

    def on_epoch_end(self, runner: Any) -> None:
        if runner.epoch == 1:
            (Path(runner.logdir) / "notes.txt").write_text(f"after {runner.global_epoch}")

    def on_stage_end(self, runner: Any) -> None:
        self.read = (Path(runner.logdir) / "notes.txt").read_text()

    def resume_files(self) -> dict[str, Path]:
        return {"notes.txt": Path("notes.txt")}


def test_a_callback_names_the_files_it_reads_back_and_they_come_along(tmp_path: Path) -> None:
    def noting(point: tuple[str, Any] | None = None) -> sg.Experiment:
        exp = experiment(point)
        exp.stages[1].callbacks["notes"] = Notes()
        exp.lints = {"SF517": "allow"}
        return exp

    assert run(tmp_path / "old", exp=noting(("epoch", 4))) is None
    data = load_checkpoint(tmp_path / "old" / "checkpoints" / "resume" / "epoch-000003.pth")
    assert sorted(data["files"]) == ["checkpoints/b.best.pth", "notes.txt"]
    exp = noting()
    sg.Runner(plan(exp, tmp_path / "new"), resume=str(tmp_path / "old")).run()
    assert exp.stages[1].callbacks["notes"].read == "after 3"


# --- one serialisation per epoch end ----------------------------------------------------------
def count_saves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    saves: list[str] = []
    save = torch.save

    def counted(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(str(obj.get("format")) if isinstance(obj, dict) else "?")
        save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", counted)
    return saves


def test_one_serialisation_gives_every_file_of_an_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saves = count_saves(monkeypatch)
    assert run(tmp_path, ("epoch", 4)) is None
    # epochs 1-3: the state once each (the checkpoint callback's), the small resume file once
    assert saves == ["stagegraph.checkpoint/1", "stagegraph.resume/2"] * 3 + [
        "stagegraph.checkpoint/1"]  # the exception file
    folder = tmp_path / "checkpoints"
    raw = torch.load(folder / "resume" / "epoch-000003.pth", weights_only=True)
    assert set(raw) == {"format", "callbacks", "resume", "state", "files"}
    assert list(raw["callbacks"]) == ["checkpoint"]  # the only one that ran after the state
    data = load_checkpoint(folder / "resume" / "epoch-000003.pth")
    inode = (folder / "resume" / raw["state"]["file"]).stat().st_ino
    assert {(folder / n).stat().st_ino for n in ("b.last.pth", "b.best.pth", "b.epoch1.pth")} == {
        inode}
    assert data["counters"]["global_epoch"] == 3 and data["callbacks"]["checkpoint"]["top"]
    assert torch.load(folder / "b.last.pth", weights_only=True)["callbacks"]["checkpoint"] == {
        "top": [], "best": None}  # written before the callback ranked this epoch, as ever


class Shrink(sg.Callback):
    """Changes the model after the checkpoint callback, at epoch end."""

    order = sg.CallbackOrder.External

    def __init__(self) -> None:
        super().__init__(after=("checkpoint",))

    def on_epoch_end(self, runner: Any) -> None:
        with torch.no_grad():
            for parameter in runner.model.parameters():
                parameter.mul_(0.5)


def test_a_callback_changing_state_after_the_checkpoint_gets_its_own_serialisation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def shrinking(point: tuple[str, Any] | None = None) -> sg.Experiment:
        exp = experiment(point)
        exp.stages[0].callbacks["shrink"] = Shrink()
        exp.lints = {"SF517": "allow"}
        return exp

    whole = outcome(run(tmp_path / "whole", exp=shrinking()))
    saves = count_saves(monkeypatch)
    assert run(tmp_path / "cut", exp=shrinking(("epoch", 2))) is None
    assert saves == ["stagegraph.checkpoint/1", "stagegraph.resume/2",
                     "stagegraph.checkpoint/1"]  # and the exception file
    folder = tmp_path / "cut" / "checkpoints"
    data = load_checkpoint(folder / "resume" / "epoch-000001.pth")
    last = torch.load(folder / "a.last.pth", weights_only=True)
    assert "state" not in data
    for key, tensor in last["model"].items():  # the callback's file: before the change
        assert torch.equal(tensor * 0.5, data["model"][key])
    monkeypatch.undo()
    assert_same(whole, outcome(run(tmp_path / "cut", exp=shrinking(), resume=True)))


# --- the CSV history --------------------------------------------------------------------------
def test_the_csv_history_stays_out_of_the_checkpoint(tmp_path: Path,
                                                     whole: dict[str, Any]) -> None:
    assert run(tmp_path, ("epoch", 4)) is None
    data = load_checkpoint(tmp_path / "checkpoints" / "resume" / "epoch-000003.pth")
    state = data["callbacks"]["csv_logger"]
    assert state["rows"] == 1 and isinstance(state["digest"], str)
    log = tmp_path / "logs" / "b.csv"
    with open(log, "a", newline="", encoding="utf-8") as handle:  # logged, then killed
        handle.write("b,2,4,1.0,2.0,3.0,4.0\r\n")
    resumed, seen = caught(tmp_path, resume=True)
    assert seen == []
    assert_same(whole, outcome(resumed))


def test_a_csv_log_that_lost_rows_is_said_to(tmp_path: Path) -> None:
    assert run(tmp_path, ("epoch", 4)) is None
    log = tmp_path / "logs" / "b.csv"
    log.write_text(log.read_text().replace("b,1,3,", "b,1,3,9"))
    resumed, seen = caught(tmp_path, resume=True)
    assert resumed is not None
    assert [s for s in seen if "b.csv" in s] == [
        f"{log}: the checkpoint counts 1 row(s) of stage 'b' that this file does not hold as "
        "they were logged; the log goes on without them"]
    assert log.read_text().count("\n") == 2  # the header and the row of epoch 2


# --- reading checkpoints ----------------------------------------------------------------------
def test_a_huge_file_named_like_a_checkpoint_is_not_read_whole(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path)
    huge = tmp_path / "epoch-000007.pth"
    with open(huge, "wb") as handle:
        handle.truncate(6 << 30)  # 6 GiB, sparse
    tracemalloc.start()
    try:
        search = store.latest()  # not indexed: loaded with mmap, found not to be a checkpoint
        assert search.data is None and "does not load" in search.skipped[0].reason
        with pytest.raises(CheckpointProblem, match="6442450944 bytes, the index says 10"):
            load_checkpoint(huge, {"bytes": 10, "sha256": "0" * 64})
        with open(huge, "r+b") as handle:
            handle.truncate(64 << 20)
        with pytest.raises(CheckpointProblem, match="sha256 checksum does not match"):
            load_checkpoint(huge, {"bytes": 64 << 20, "sha256": "0" * 64})
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()
