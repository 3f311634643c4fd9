"""TensorBoardLogger after real runs, read back with TensorBoard's own `EventAccumulator`."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from tracker_helpers import GLOBAL_EPOCHS, run

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)
from tensorboard.plugins.hparams import plugin_data_pb2

import stagegraph as sg
from stagegraph.runtime.callbacks import TensorBoardLogger
from stagegraph.runtime.errors import ResumeWarning


def _read(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def _steps(events: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in events.Scalars(tag)]


def _logger(**kwargs: Any) -> TensorBoardLogger:
    return TensorBoardLogger(scope="experiment", **kwargs)


def test_one_run_for_the_experiment_with_grouped_tags_lr_and_hparams(tmp_path: Path) -> None:
    run(tmp_path, TensorBoardLogger(), train_logger=TensorBoardLogger())  # one per stage
    folder = tmp_path / "tensorboard"
    assert [p for p in folder.iterdir() if p.is_dir()] == []  # one run, not one per stage
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # the stages share one file
    events = _read(folder)
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/valid", "accuracy/train", "accuracy/valid",
            "lr/group0", "lr/group1"} <= tags
    assert not any(tag.startswith(("train_", "valid_", "epoch/")) for tag in tags)
    every = list(range(1, GLOBAL_EPOCHS + 1))
    assert _steps(events, "loss/valid") == every  # steps continue across the two stages
    assert _steps(events, "lr/group0") == every
    # Two param groups in warmup (0.1 and 0.01), one in train (Adam, 0.003).
    assert [e.value for e in events.Scalars("lr/group1")] == pytest.approx([0.01, 0.01])
    assert [e.value for e in events.Scalars("lr/group0")][2:] == pytest.approx([0.003] * 3)

    content = events.PluginTagToContent("hparams")  # written once, by the first stage's
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    hparams = {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
               for key, value in start.hparams.items()}
    assert hparams["seed"] == 1 and hparams["warmup.num_epochs"] == 2
    assert hparams["train.main_metric"] == "loss"
    assert hparams["train.optimizer"].endswith("<lambda>")
    assert hparams["train.callbacks.early_stopping.patience"] == 5
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    assert {info.name.tag for info in experiment.metric_infos} >= {"loss/valid",
                                                                  "accuracy/valid"}


def test_a_resumed_run_leaves_each_step_once(tmp_path: Path) -> None:
    assert run(tmp_path, _logger(), stop_at=5) is None  # epochs 1-4 logged
    latest = tmp_path / "checkpoints" / "resume" / "epoch-000004.pth"
    latest.write_bytes(latest.read_bytes()[:100])  # damaged: the resume starts after epoch 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResumeWarning)
        resumed = run(tmp_path, _logger(), resume=True)
    assert resumed.resumed_from.name == "epoch-000003.pth"
    events = _read(tmp_path / "tensorboard")
    every = list(range(1, GLOBAL_EPOCHS + 1))
    assert _steps(events, "loss/valid") == every  # epoch 4, logged twice, is there once
    assert _steps(events, "lr/group0") == every


def test_batch_metrics_are_a_second_run(tmp_path: Path) -> None:
    run(tmp_path, _logger(log_batch_every=2))
    events = _read(tmp_path / "tensorboard" / "batches")
    # 3 train + 2 valid batches per epoch, 5 epochs: global batch steps 1..25, every second.
    steps = _steps(events, "batch/loss/train") + _steps(events, "batch/loss/valid")
    assert sorted(steps) == list(range(2, 26, 2))
    assert "loss/valid" in _read(tmp_path / "tensorboard").Tags()["scalars"]


def test_lr_is_the_rate_the_epoch_trained_with(tmp_path: Path) -> None:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.randn(16, 4)
    data = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)
    exp = sg.Experiment("lr", seed=0, model=lambda: nn.Linear(4, 2),
                        criterion=nn.CrossEntropyLoss())
    exp.add_stage("s", num_epochs=3, loaders={"train": data, "valid": data},
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                  scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.5),
                  callbacks={"tb": TensorBoardLogger()})
    sg.run(exp, device="cpu", verbose=False, logdir=str(tmp_path))
    events = _read(tmp_path / "tensorboard")
    rates = [(e.step, round(e.value, 6)) for e in events.Scalars("lr/group0")]
    assert rates == [(1, 0.1), (2, 0.05), (3, 0.025)]  # before the scheduler steps
    assert [round(e.value, 6) for e in events.Scalars("lr")] == [r for _, r in rates]


def test_a_resume_in_the_same_second_and_process_reads_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two event files of one second sort by a process-wide counter compared as text: ".10"
    # before ".9". The resumed run's file must still be read last.
    from tensorboard.summary.writer import event_file_writer

    assert run(tmp_path, _logger(), stop_at=5) is None  # epochs 1-4 logged
    folder = tmp_path / "tensorboard"
    (first,) = folder.glob("events.out.tfevents.*")
    time.sleep(1 - time.time() % 1)  # a second starts: the resume opens its file within it
    host_pid = first.name.split(".", 4)[4].rsplit(".", 1)[0]
    first.rename(folder / f"events.out.tfevents.{int(time.time())}.{host_pid}.9")
    monkeypatch.setattr(event_file_writer._global_uid, "_value", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResumeWarning)
        run(tmp_path, _logger(), resume=True)
    names = sorted(p.name for p in folder.glob("events.out.tfevents.*"))
    assert names[0].endswith(".9") and names[1].endswith(".10")
    assert _steps(_read(folder), "loss/valid") == list(range(1, GLOBAL_EPOCHS + 1))
