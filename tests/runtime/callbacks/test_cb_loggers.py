"""CSVLogger, ConsoleLogger, TensorBoardLogger, TimerCallback and PredictionWriter."""

from __future__ import annotations

import csv
import io
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from cb_helpers import batches, fire, make_runner, run_epoch, run_loader
from torch import nn

from stagegraph.runtime.callbacks import (
    ConsoleLogger,
    CriterionCallback,
    CSVLogger,
    MetricAggregationCallback,
    PredictionWriter,
    TensorBoardLogger,
    TimerCallback,
    ValidationManagerCallback,
)
from stagegraph.runtime.callbacks.console import best_table, format_value, public_metrics


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_rows_per_epoch_flushed_before_the_stage_ends(tmp_path: Path) -> None:
    runner = make_runner(logdir=tmp_path, epoch=0, global_epoch=4)
    logger = CSVLogger()
    logger.on_stage_start(runner)
    for epoch, loss in ((1, 0.5), (2, 0.25)):
        runner.epoch, runner.global_epoch = epoch, runner.global_epoch + 1
        runner.epoch_metrics = {"valid_loss": loss, "train_loss": torch.tensor(loss * 2),
                                "lr": 0.1}
        logger.on_epoch_end(runner)
        rows = _read_csv(tmp_path / "logs" / "train.csv")  # readable while the stage runs
        assert len(rows) == epoch
    assert rows == [
        {"stage": "train", "epoch": "1", "global_epoch": "5", "lr": "0.1",
         "train_loss": "1.0", "valid_loss": "0.5"},
        {"stage": "train", "epoch": "2", "global_epoch": "6", "lr": "0.1",
         "train_loss": "0.5", "valid_loss": "0.25"},
    ]
    logger.on_stage_end(runner)


def test_csv_file_is_released_when_the_run_fails(tmp_path: Path) -> None:
    runner = make_runner(logdir=tmp_path, epoch=1, global_epoch=1)
    logger = CSVLogger()
    logger.on_stage_start(runner)
    runner.epoch_metrics = {"valid_loss": 0.5}
    logger.on_epoch_end(runner)
    handle = logger._handle
    assert handle is not None and not handle.closed
    logger.on_exception(runner)  # on_stage_end never fires after an exception
    assert handle.closed and logger._handle is None
    assert len(_read_csv(tmp_path / "logs" / "train.csv")) == 1


def test_csv_header_widens_when_a_metric_appears(tmp_path: Path) -> None:
    runner = make_runner(logdir=tmp_path, stage_name="finetune")
    logger = CSVLogger()
    logger.on_stage_start(runner)
    runner.epoch_metrics = {"valid_loss": 1.0}
    logger.on_epoch_end(runner)
    runner.epoch, runner.epoch_metrics = 2, {"valid_loss": 0.5, "valid_accuracy": 0.9}
    logger.on_epoch_end(runner)
    runner.epoch, runner.epoch_metrics = 3, {"valid_loss": 0.4, "valid_accuracy": 0.95}
    logger.on_epoch_end(runner)
    logger.on_stage_end(runner)
    text = (tmp_path / "logs" / "finetune.csv").read_text()
    assert text.splitlines()[0] == "stage,epoch,global_epoch,valid_loss,valid_accuracy"
    rows = _read_csv(tmp_path / "logs" / "finetune.csv")
    assert [row["valid_accuracy"] for row in rows] == ["", "0.9", "0.95"]
    assert not list((tmp_path / "logs").glob("*.tmp"))


def _console_run(file: io.StringIO, **kwargs: Any) -> Any:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    runner = make_runner(model=model, criterion=nn.CrossEntropyLoss(), epoch=0, global_epoch=0,
                         num_epochs=2, loaders={"train": 0, "valid": 0})
    callbacks = [CriterionCallback(), MetricAggregationCallback(), ValidationManagerCallback(),
                 ConsoleLogger(file=file, **kwargs)]
    runner.callbacks = dict(zip(("criterion", "agg", "validation", "console"), callbacks,
                                strict=True))
    fire("on_stage_start", runner, callbacks)
    data = {"train": batches([4, 4, 2]), "valid": batches([3, 3], seed=1)}
    for _ in range(2):
        run_epoch(runner, callbacks, data)
    fire("on_stage_end", runner, callbacks)
    fire("on_experiment_end", runner, callbacks)
    return runner


def test_console_in_a_log_file_prints_lines_summaries_and_the_best_table() -> None:
    out = io.StringIO()
    runner = _console_run(out)
    text = out.getvalue()
    assert "\r" not in text  # not a terminal: plain lines only
    lines = text.splitlines()
    assert lines[0] == "stage 'train': 2 epoch(s), main metric loss (min)"
    assert lines[1].startswith("1/2 train: 3/3 batches in ") and "loss=" in lines[1]
    assert "samples/s" in lines[1]
    summary = [i for i, line in enumerate(lines) if line.startswith("[train] epoch")]
    assert len(summary) == 2 and lines[summary[0]].endswith("(best)")
    assert lines[summary[0] + 1].split() == ["metric", "train", "valid"]
    assert lines[summary[0] + 2].split()[0] == "loss"
    table = text[text.index("best valid metrics per stage:"):].splitlines()
    assert table[1].split() == ["stage", "epoch", "loss"]
    assert table[2].split()[0] == "train"
    assert table[2].split()[2] == format_value(runner.best_valid_metrics["loss"])


def test_console_refreshes_at_a_bounded_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    _console_run(out, log_interval=3600.0)
    # One line per loader (its end), none in between: the interval is never reached.
    assert sum(" batches in " in line for line in out.getvalue().splitlines()) == 4


def test_console_with_a_terminal_uses_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    _console_run(out, refresh_interval=0.0)
    assert "\r" in out.getvalue() and "batch/s" in out.getvalue()


def test_console_without_aggregation_shows_the_latest_batch_value() -> None:
    out = io.StringIO()
    logger = ConsoleLogger(file=out, log_interval=0.0)
    loss = torch.tensor(0.75, requires_grad=True) * 1.0
    runner = make_runner(loader_len=1, batch_metrics={"loss": loss}, loader_sample_step=4)
    logger.on_loader_start(runner)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logger.on_batch_end(runner)
    assert "1/1 batches" in out.getvalue() and "loss=0.75" in out.getvalue()


def test_console_closes_its_bar_on_exception() -> None:
    out = io.StringIO()
    logger = ConsoleLogger(file=out)
    runner = make_runner(loader_len=5)
    logger.on_loader_start(runner)
    logger.on_exception(runner)
    assert logger._bar is None


def test_console_helpers() -> None:
    assert public_metrics({"train__timer/x": 1, "train_loss": 2, "lr": 3, "_private": 4},
                          ["train"]) == {"train_loss": 2, "lr": 3}
    assert format_value(torch.tensor(0.5)) == "0.5"
    assert best_table({"infer": {}}) == ""
    assert best_table({"a": {"epoch": 2, "loss": 0.5}, "b": {"loss": 0.25, "acc": 1.0}}) == (
        "best valid metrics per stage:\n"
        "stage  epoch  acc  loss\n"
        "a      2      -    0.5\n"
        "b      -      1    0.25")


def test_timer_metrics_aggregate_like_any_other() -> None:
    torch.manual_seed(0)
    runner = make_runner(model=nn.Linear(4, 3), criterion=nn.CrossEntropyLoss())
    callbacks = [TimerCallback(), CriterionCallback(), MetricAggregationCallback()]
    run_loader(runner, callbacks, "train", batches([4, 4, 2]))
    names = {"_timer/batch_time", "_timer/handler_time", "_timer/samples_per_sec"}
    assert names <= set(runner.batch_metrics)
    epoch = runner.epoch_metrics
    assert {"train__timer/batch_time", "train__timer/handler_time",
            "train__timer/loader_time", "train__timer/samples_per_sec", "train_loss"} == set(epoch)
    assert 0 < epoch["train__timer/handler_time"] <= epoch["train__timer/batch_time"]
    assert epoch["train__timer/samples_per_sec"] == pytest.approx(
        10 / epoch["train__timer/loader_time"])


def _infer_run(tmp_path: Path, writer: PredictionWriter, loader: str = "infer") -> Any:
    torch.manual_seed(0)
    runner = make_runner(model=nn.Linear(4, 3), logdir=tmp_path, stage_name="infer")
    run_loader(runner, [writer], loader, batches([4, 2]))
    return runner


def test_prediction_writer_pt(tmp_path: Path) -> None:
    writer = PredictionWriter(input_keys=["targets"], argmax=True)
    runner = _infer_run(tmp_path, writer)
    data = torch.load(tmp_path / "predictions" / "infer_infer.pt", weights_only=True)
    assert set(data) == {"logits", "targets", "logits_argmax"}
    assert data["logits"].shape == (6, 3) and data["targets"].shape == (6,)
    assert torch.equal(data["logits_argmax"], data["logits"].argmax(1))
    assert torch.allclose(data["logits"][4:], runner.output["logits"])
    assert writer.written == [tmp_path / "predictions" / "infer_infer.pt"]


def test_prediction_writer_csv(tmp_path: Path) -> None:
    _infer_run(tmp_path, PredictionWriter(keys=["logits"], format="csv"))
    rows = _read_csv(tmp_path / "predictions" / "infer_infer.csv")
    assert len(rows) == 6 and list(rows[0]) == ["logits_0", "logits_1", "logits_2"]


def test_prediction_writer_without_a_logdir_keeps_predictions_in_memory(
        tmp_path: Path) -> None:
    writer = PredictionWriter()
    runner = make_runner(model=nn.Linear(4, 3), logdir=None, stage_name="infer")
    with pytest.warns(UserWarning, match="no logdir"):
        run_loader(runner, [writer], "infer", batches([4, 2]))
    assert writer.predictions["infer_infer"]["logits"].shape == (6, 3)
    assert writer.written == []


def test_prediction_writer_skips_other_loaders_unless_named(tmp_path: Path) -> None:
    _infer_run(tmp_path, PredictionWriter(), loader="valid")
    assert not (tmp_path / "predictions").exists()
    _infer_run(tmp_path, PredictionWriter(loaders=["valid"]), loader="valid")
    assert (tmp_path / "predictions" / "infer_valid.pt").exists()
    assert PredictionWriter(keys=["probs"], input_keys=["id"]).reads == (
        "output.probs", "batch.id")
    with pytest.raises(ValueError, match="format"):
        PredictionWriter(format="json")


def test_tensorboard_missing_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install 'stagegraph\[tensorboard\]'"):
        TensorBoardLogger()


def test_tensorboard_writes_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    logger = TensorBoardLogger(log_batch_every=1)
    runner = make_runner(logdir=tmp_path, global_batch_step=1, batch_metrics={"loss": 0.5},
                         epoch_metrics={"valid_loss": 0.5, "lr": 0.1},
                         loaders={"train": 0, "valid": 0})
    logger.on_stage_start(runner)
    logger.on_batch_end(runner)
    logger.on_epoch_end(runner)
    logger.on_stage_end(runner)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert list((tmp_path / "tensorboard" / "batches").glob("events.out.tfevents.*"))
