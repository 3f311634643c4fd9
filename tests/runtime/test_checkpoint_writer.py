"""Checkpoints written on a background thread: the same files as synchronous writes, a true copy of
the state, what waits for the writer, and a failed write (a full disk) reported clearly.

The runs use the three-stage experiment of `resume_helpers` (stage ``b`` writes checkpoint
files and loads its best weights at its end); kills during a background write are in
test_resume_kill.py (``write:`` and ``inflight:`` points).
"""

from __future__ import annotations

import ast
import errno
import io
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from resume_helpers import assert_same, build, outcome, plan, run

import stagegraph as sg
from stagegraph.cli.run import run_plan
from stagegraph.runtime import RunError
from stagegraph.runtime.callbacks import files as files_module
from stagegraph.runtime.callbacks.files import save_file
from stagegraph.runtime.callbacks.writer import SYNC_VARIABLE, CheckpointWriter, host_copy
from stagegraph.runtime.errors import CheckpointWriteError, StagegraphWarning
from stagegraph.runtime.resume import ResumeStore, load_checkpoint

HERE = Path(__file__).parent
SOURCES = HERE.parents[1] / "stagegraph" / "runtime" / "callbacks"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return outcome(run(tmp_path_factory.mktemp("reference")))


def contents(logdir: Path) -> dict[str, bytes]:
    """Every file a run leaves, but the lock and the finished mark (which holds the time)."""
    return {str(p.relative_to(logdir)): p.read_bytes() for p in sorted(logdir.rglob("*"))
            if p.is_file() and p.name not in (".stagegraph.lock", "finished.json")}


# --- the same bytes ---------------------------------------------------------------------------
def test_background_and_synchronous_writes_give_the_same_files(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    logdir = tmp_path / "run"  # both runs in one place: the plan records its logdir
    synchronous = run(logdir, sync_checkpoints=True)
    assert not synchronous.checkpoint_writer.background
    files = contents(logdir)
    logdir.rename(tmp_path / "sync")
    background = run(logdir)
    assert background.checkpoint_writer.background
    assert contents(logdir) == files
    assert "checkpoints/b.best.pth" in files and "checkpoints/resume/epoch-000006.pth" in files
    assert_same(reference, outcome(synchronous))
    assert_same(reference, outcome(background))


def test_the_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compiled = plan(build(), tmp_path)
    assert sg.Runner(compiled).checkpoint_writer.background
    assert not sg.Runner(compiled, sync_checkpoints=True).checkpoint_writer.background
    monkeypatch.setenv(SYNC_VARIABLE, "1")
    assert not sg.Runner(compiled).checkpoint_writer.background
    monkeypatch.setenv(SYNC_VARIABLE, "0")
    assert sg.Runner(compiled).checkpoint_writer.background


def serialised(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_the_host_copy_owns_its_memory_and_serialises_to_the_same_bytes() -> None:
    weight = torch.randn(4, 6)
    data = {"model": {"weight": weight, "tied": weight, "view": weight[1:, ::2]},
            "step": torch.tensor(3.0), "rng": [torch.ByteTensor([1, 2])], "n": (1, "a")}
    copy = host_copy(data)
    assert serialised(copy) == serialised(data)  # shared storages and views kept as they were
    assert copy["model"]["tied"] is not weight
    assert copy["model"]["tied"].untyped_storage().data_ptr() == \
        copy["model"]["weight"].untyped_storage().data_ptr()
    before = serialised(copy)
    weight.add_(1.0)  # what the next epoch's optimizer step does
    assert serialised(copy) == before


class Hold(sg.Callback):
    """Holds the writer up at the end of epoch ``at`` (a slow disk), then changes the model in
    place at the next epoch's start while the checkpoint of ``at`` is still queued."""

    order = sg.CallbackOrder.External

    def __init__(self, at: int) -> None:
        super().__init__(before=("checkpoint",))
        self.at, self.gate, self.kept = at, threading.Event(), {}

    def on_epoch_end(self, runner: Any) -> None:
        if runner.global_epoch == self.at:
            self.kept = {k: v.clone() for k, v in runner.model.state_dict().items()}
            runner.checkpoint_writer.submit(Path("hold"), self.gate.wait)

    def on_epoch_start(self, runner: Any) -> None:
        if runner.global_epoch == self.at + 1:
            with torch.no_grad():
                for parameter in runner.model.parameters():
                    parameter.add_(100.0)
            self.gate.set()


def test_the_checkpoint_holds_the_state_of_its_epoch_not_of_the_next(tmp_path: Path) -> None:
    hold = Hold(at=3)
    exp = build(("epoch", 5))  # stopped there, so that the checkpoint of epoch 3 is kept
    exp.stages[1].callbacks["hold"] = hold
    exp.lints = {"SF517": "allow"}
    with pytest.raises(RunError):
        sg.Runner(plan(exp, tmp_path)).run()
    data = load_checkpoint(tmp_path / "checkpoints" / "resume" / "epoch-000003.pth")
    assert data["model"].keys() == hold.kept.keys()
    assert all(torch.equal(data["model"][k], hold.kept[k]) for k in hold.kept)


def test_a_failed_run_waits_for_its_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync = os.fsync

    def slow(fd: int) -> None:
        time.sleep(0.05)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", slow)
    assert run(tmp_path, ("epoch", 4)) is None  # fails right after epoch 3 was handed over
    store = ResumeStore.of_logdir(tmp_path)
    assert [p.name for _, p in store.files()] == ["epoch-000003.pth", "epoch-000002.pth"]
    assert "epoch-000003.pth" in store.index()
    assert not list(tmp_path.rglob("*.tmp"))


# --- a full disk ------------------------------------------------------------------------------
def fill_disk_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Every fsync fails with ENOSPC from the first write of a file called ``name`` on."""
    fsync, full = os.fsync, [False]

    def failing(fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        full[0] = full[0] or os.path.basename(path).startswith(f".{name}.")
        if full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc (Linux)")
def test_a_failed_background_write_surfaces_at_the_next_epoch_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, Any]) -> None:
    fill_disk_at(monkeypatch, "b.best.pth")  # the file of global epoch 3, the first of stage b
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(RunError) as info:
            sg.Runner(plan(build(), tmp_path)).run()
    best = tmp_path / "checkpoints" / "b.best.pth"
    assert str(info.value) == (
        f"run failed at stage 'b', epoch 2: CheckpointWriteError: could not write checkpoint "
        f"{best}: the disk is full: no space left on device (ENOSPC); free space on that disk, "
        "or choose another --logdir, then continue with --resume: the checkpoints written "
        "before it are complete")
    cause = info.value.__cause__
    assert isinstance(cause, CheckpointWriteError) and cause.path == best
    assert isinstance(cause.__cause__, OSError) and cause.__cause__.errno == errno.ENOSPC
    # The resume checkpoint of that epoch was never written; the one before it is intact.
    store = ResumeStore.of_logdir(tmp_path)
    assert [p.name for _, p in store.files()] == ["epoch-000002.pth", "epoch-000001.pth"]
    assert not list(tmp_path.rglob("*.tmp"))
    (exception_file,) = [str(w.message) for w in seen if isinstance(w.message, StagegraphWarning)]
    assert exception_file.startswith("the run failed, and its exception checkpoint "
                                     "b.exception.pth (for post-mortem only) could not be "
                                     "written either: No space left on device;")
    monkeypatch.undo()
    resumed = run(tmp_path, resume=True)
    assert resumed.resumed_from == store.folder / "epoch-000002.pth"
    assert_same(reference, outcome(resumed))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("synchronous", [False, True], ids=["background", "sync"])
def test_a_full_disk_says_so_in_plain_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        synchronous: bool) -> None:
    """`stagegraph run`: an error naming the file and ENOSPC, a plain warning, no traceback."""
    if synchronous:
        monkeypatch.setenv(SYNC_VARIABLE, "1")
    fill_disk_at(monkeypatch, "b.best.pth")
    assert run_plan(plan(build(), tmp_path), check=False, show_traceback=False) == 1
    err = capsys.readouterr().err
    assert "UserWarning" not in err and "Traceback" not in err
    assert "warning: the run failed, and its exception checkpoint b.exception.pth" in err
    where = "epoch 1, callback 'checkpoint' (on_epoch_end)" if synchronous else "epoch 2"
    assert (f"error: run failed at stage 'b', {where}: CheckpointWriteError: could not write "
            f"checkpoint {tmp_path / 'checkpoints' / 'b.best.pth'}: the disk is full") in err


class FullDisk(io.RawIOBase):
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return size


@pytest.mark.parametrize("room", [0, 100, 600, 5000])
def test_save_file_reports_the_disk_error_not_torchs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """torch's zip writer may report a failed write as its own RuntimeError ("unexpected pos")."""
    monkeypatch.setattr(files_module.os, "fdopen", lambda fd, mode: io.BufferedWriter(
        FullDisk(room), buffer_size=64))
    target = tmp_path / "x.pth"
    with pytest.raises(OSError) as info:
        save_file({"weight": torch.randn(64, 64), "bias": torch.randn(64)}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)


def test_a_failed_job_skips_the_ones_after_it_until_reported(tmp_path: Path) -> None:
    writer = CheckpointWriter()
    done: list[str] = []

    def fail() -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    writer.submit(tmp_path / "a.pth", fail)
    writer.submit(tmp_path / "resume.pth", lambda: done.append("resume"))
    with pytest.raises(CheckpointWriteError, match=r"a\.pth: the file system is read-only"):
        writer.wait()
    assert done == []  # never a resume checkpoint naming a file that was not written
    writer.submit(tmp_path / "b.pth", lambda: done.append("b"))
    writer.close()
    assert done == ["b"]


# --- no torch at import -----------------------------------------------------------------------
@pytest.mark.parametrize("module", ["checkpoint.py", "files.py", "writer.py"])
def test_no_torch_import_at_module_level(module: str) -> None:
    tree = ast.parse((SOURCES / module).read_text(encoding="utf-8"))
    imported = [alias.name for node in tree.body if isinstance(node, ast.Import)
                for alias in node.names]
    imported += [node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.split(".")[0] == "torch"]
