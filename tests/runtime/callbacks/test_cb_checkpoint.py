"""CheckpointCallback and its file helpers: content, atomic writes, N best, exception files."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cb_helpers import fire, make_runner
from torch import nn

from stagegraph.runtime.callbacks import (
    CheckpointCallback,
    EarlyStoppingCallback,
    ValidationManagerCallback,
)
from stagegraph.runtime.callbacks.files import atomic_write, plain


def _runner(tmp_path: Path, **overrides: Any) -> Any:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    runner = make_runner(model=model, optimizer=optimizer, scheduler=scheduler,
                         scaler=torch.amp.GradScaler("cpu"), logdir=tmp_path, epoch=0,
                         global_epoch=0, loaders={"train": 0, "valid": 0}, **overrides)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()  # optimizer state with tensors
    return runner


def _stage(runner: Any, callbacks: list[Any], losses: list[float]) -> None:
    """A stage whose epochs have these valid losses (the model's bias records the epoch)."""
    fire("on_stage_start", runner, callbacks)
    for loss in losses:
        runner.epoch += 1
        runner.global_epoch += 1
        runner.global_batch_step += 10
        with torch.no_grad():
            getattr(runner.model, "module", runner.model).bias.fill_(runner.epoch)
        fire("on_epoch_start", runner, callbacks)
        runner.epoch_metrics = {"train_loss": loss + 1, "valid_loss": loss, "lr": 0.01}
        fire("on_epoch_end", runner, callbacks)
        if runner.need_early_stop:
            break
    fire("on_stage_end", runner, callbacks)


def _files(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "checkpoints"))


def test_files_content_and_weights_only_loading(tmp_path: Path) -> None:
    runner = _runner(tmp_path, plan=type("Plan", (), {"hash": "abc123", "experiment": "x"})())
    callbacks = [ValidationManagerCallback(), EarlyStoppingCallback(patience=5),
                 CheckpointCallback(save_n_best=1)]
    runner.callbacks = {"validation": callbacks[0], "es": callbacks[1], "checkpoint": callbacks[2]}
    _stage(runner, callbacks, [0.5, 0.3, 0.4])
    assert _files(tmp_path) == ["train.best.pth", "train.epoch2.pth", "train.last.pth"]
    last = torch.load(tmp_path / "checkpoints" / "train.last.pth", weights_only=True)
    assert last["plan_hash"] == "abc123" and last["stage"] == "train"
    assert last["counters"] == {"stage": "train", "epoch": 3, "global_epoch": 3,
                                "global_batch_step": 30, "global_sample_step": 0}
    assert last["epoch_metrics"] == {"train_loss": 1.4, "valid_loss": 0.4, "lr": 0.01}
    assert last["valid_metrics"] == {"loss": 0.4}
    assert last["best_valid_metrics"] == {"loss": 0.3}
    assert set(last["callbacks"]) == {"validation", "es", "checkpoint"}
    assert last["callbacks"]["es"] == {"best": 0.3, "wait": 1, "best_epoch": 2,
                                       "stopped": None}
    assert last["optimizer"]["state"] and last["scheduler"]["best"] == float("inf")
    assert "scale" in last["scaler"]
    assert last["model"]["bias"].tolist() == [3.0, 3.0]
    best = torch.load(tmp_path / "checkpoints" / "train.best.pth", weights_only=True)
    assert best["model"]["bias"].tolist() == [2.0, 2.0]
    model = nn.Linear(3, 2)
    model.load_state_dict(best["model"])
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.load_state_dict(best["optimizer"])


def test_save_n_best_keeps_the_n_best_epoch_files(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    callbacks = [ValidationManagerCallback(), CheckpointCallback(save_n_best=2)]
    _stage(runner, callbacks, [0.5, 0.3, 0.6, 0.4, 0.2, 0.9])
    assert _files(tmp_path) == ["train.best.pth", "train.epoch2.pth", "train.epoch5.pth",
                                "train.last.pth"]
    assert [epoch for _, epoch, _ in callbacks[1].top] == [5, 2]


def test_save_n_best_when_maximising_and_zero(tmp_path: Path) -> None:
    runner = _runner(tmp_path, main_metric="loss", minimize_metric=False)
    _stage(runner, [ValidationManagerCallback(), CheckpointCallback(save_n_best=1)],
           [0.5, 0.7, 0.6])
    assert "train.epoch2.pth" in _files(tmp_path) and "train.epoch1.pth" not in _files(tmp_path)
    runner = _runner(tmp_path / "zero")
    _stage(runner, [ValidationManagerCallback(), CheckpointCallback(save_n_best=0)], [0.5])
    assert _files(tmp_path / "zero") == ["train.best.pth", "train.last.pth"]


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    _stage(runner, [ValidationManagerCallback(), CheckpointCallback(save_n_best=3)],
           [0.5, 0.4, 0.3, 0.2])
    assert not [name for name in _files(tmp_path) if name.endswith(".tmp")]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_load_best_on_stage_end(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    _stage(runner, [ValidationManagerCallback(),
                    CheckpointCallback(load_best_on_stage_end=True)], [0.5, 0.1, 0.3])
    assert runner.model.bias.tolist() == [2.0, 2.0]


def test_exception_checkpoint_leaves_best_and_last_alone(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    callback = CheckpointCallback()
    _stage(runner, [ValidationManagerCallback(), callback], [0.5])
    before = {name: (tmp_path / "checkpoints" / name).read_bytes() for name in _files(tmp_path)}
    runner.exception = RuntimeError("boom")
    callback.on_exception(runner)
    assert _files(tmp_path) == sorted([*before, "train.exception.pth"])
    for name, data in before.items():
        assert (tmp_path / "checkpoints" / name).read_bytes() == data
    post_mortem = torch.load(tmp_path / "checkpoints" / "train.exception.pth", weights_only=True)
    assert post_mortem["exception"] == "RuntimeError('boom')"


def test_exception_checkpoint_failure_only_warns(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    runner.model = object()  # not a module: state_dict() fails
    with pytest.warns(UserWarning, match="exception checkpoint"):
        CheckpointCallback().on_exception(runner)


def test_data_parallel_wrappers_are_unwrapped(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    runner.model = nn.DataParallel(runner.model)
    _stage(runner, [ValidationManagerCallback(), CheckpointCallback()], [0.5])
    state = torch.load(tmp_path / "checkpoints" / "train.last.pth", weights_only=True)
    assert set(state["model"]) == {"weight", "bias"}


def test_without_a_logdir_it_warns_and_keeps_the_best_weights_in_memory(
        tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    runner.logdir = None
    with pytest.warns(UserWarning, match="no logdir"):
        _stage(runner, [ValidationManagerCallback(),
                        CheckpointCallback(load_best_on_stage_end=True)], [0.5, 0.1, 0.3])
    assert runner.model.bias.tolist() == [2.0, 2.0]
    assert not (tmp_path / "checkpoints").exists()


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="save_n_best"):
        CheckpointCallback(save_n_best=-1)
    with pytest.raises(ValueError, match="prefix"):
        CheckpointCallback(prefix="sub/")


def test_two_checkpoints_with_different_prefixes_keep_their_own_files(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    plain_, ema = CheckpointCallback(save_n_best=1), CheckpointCallback(
        save_n_best=2, load_best_on_stage_end=True, prefix="ema_")
    assert plain_.claims == ("files:checkpoints/",) and ema.claims == ("files:checkpoints/ema_",)
    _stage(runner, [ValidationManagerCallback(), plain_, ema], [0.5, 0.1, 0.3])
    assert _files(tmp_path) == ["ema_train.best.pth", "ema_train.epoch2.pth",
                                "ema_train.epoch3.pth", "ema_train.last.pth", "train.best.pth",
                                "train.epoch2.pth", "train.last.pth"]
    assert runner.model.bias.tolist() == [2.0, 2.0]  # loaded from ema_train.best.pth
    runner.exception = RuntimeError("boom")
    ema.on_exception(runner)
    assert "ema_train.exception.pth" in _files(tmp_path)
    assert "train.exception.pth" not in _files(tmp_path)
    resumed = CheckpointCallback(save_n_best=2, prefix="ema_")
    resumed.load_state_dict(ema.state_dict())
    _stage(runner, [ValidationManagerCallback(), resumed], [0.05])
    assert "ema_train.epoch3.pth" not in _files(tmp_path)  # dropped from the top 2
    assert "train.epoch2.pth" in _files(tmp_path)  # the other callback's files are untouched


def test_state_dict_keeps_the_ranking_across_a_resume(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    first = CheckpointCallback(save_n_best=2)
    _stage(runner, [ValidationManagerCallback(), first], [0.5, 0.3])
    resumed = CheckpointCallback(save_n_best=2)
    resumed.load_state_dict(first.state_dict())
    _stage(runner, [ValidationManagerCallback(), resumed], [0.4])
    assert [epoch for _, epoch, _ in resumed.top] == [2, 3]
    assert "train.epoch1.pth" not in _files(tmp_path)


class Colour(enum.Enum):
    red = "red"


def test_plain_makes_anything_weights_only_loadable(tmp_path: Path) -> None:
    data = {"array": np.arange(3), "scalar": np.float32(1.5), "enum": Colour.red,
            "path": Path("a/b"), ("tuple", "key"): (1, [2.0, None]), "tensor": torch.ones(2),
            "dtype": torch.float16}
    with pytest.warns(UserWarning, match="repr"):
        data["object"] = plain(object())
    converted = plain(data)
    torch.save(converted, tmp_path / "x.pth")
    loaded = torch.load(tmp_path / "x.pth", weights_only=True)
    assert loaded["array"].tolist() == [0, 1, 2] and loaded["scalar"] == 1.5
    assert loaded["enum"] == "red" and loaded["path"] == os.fspath(Path("a/b"))
    assert loaded["('tuple', 'key')"] == (1, [2.0, None])
    assert loaded["dtype"] is torch.float16 and loaded["object"].startswith("<object")
