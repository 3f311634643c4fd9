"""Mid-epoch checkpoints and graceful stops, in process: what `resume/midepoch.py` promises.

Batch-interval checkpoints resume bit-exactly without loading the skipped batches' data; a
SIGTERM (sent by a callback to its own process) stops at the next batch boundary with a
checkpoint; loaders that cannot be skipped into are named; bad options are refused. The
real-process kill chains are in test_resume_kill.py.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

import stagegraph as sg
from stagegraph.cli import main
from stagegraph.runtime import RunError
from stagegraph.runtime.resume import ResumeStore

needs_main_thread = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                       reason="signal handlers need the main thread")


class Counted(Dataset[Any]):
    """A map-style dataset that counts the items it loads."""

    loads = 0

    def __init__(self, samples: int = 40) -> None:
        generator = torch.Generator().manual_seed(samples)
        self.x = torch.randn(samples, 4, generator=generator)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        Counted.loads += 1
        return self.x[index], self.y[index]


class Stream(IterableDataset[Any]):
    def __iter__(self) -> Any:
        data = Counted(16)
        return iter([data[i] for i in range(len(data))])


class Interrupt(Exception):
    pass


class At(sg.Callback):
    """At batch ``n`` of epoch ``epoch``'s train loader: raise, or send this process a signal."""

    scope = sg.CallbackScope.experiment

    def __init__(self, epoch: int = 0, n: int = 0, send: int | None = None,
                 event: str = "batch") -> None:
        super().__init__()
        self.epoch, self.n, self.send, self.event = epoch, n, send, event

    def _act(self) -> None:
        if self.send is None:
            raise Interrupt
        os.kill(os.getpid(), self.send)

    def on_batch_start(self, runner: Any) -> None:
        if (self.event == "batch" and runner.epoch == self.epoch and runner.is_train_loader
                and runner.loader_batch_step == self.n):
            self._act()

    def on_epoch_end(self, runner: Any) -> None:
        if self.event == "epoch_end" and runner.epoch == self.epoch:
            self._act()


def build(at: At | None = None, stream: bool = False) -> sg.Experiment:
    train = ((lambda: DataLoader(Stream(), batch_size=4)) if stream
             else (lambda: DataLoader(Counted(), batch_size=4, shuffle=True)))
    exp = sg.Experiment("mid", seed=5, criterion=nn.CrossEntropyLoss,
                        model=lambda: nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3),
                                                    nn.Linear(8, 2)),
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9))
    exp.add_stage("s", num_epochs=3, loaders={
        "train": train, "valid": lambda: DataLoader(Counted(12), batch_size=4)},
        callbacks={"at": at or At(),
                   "optimizer": sg.runtime.callbacks.OptimizerCallback(accumulation_steps=3)})
    return exp


def runner(logdir: Path, at: At | None = None, stream: bool = False, **options: Any) -> Any:
    plan = sg.compile(build(at, stream), device="cpu", verbose=False, logdir=str(logdir))
    return sg.Runner(plan, **options)


def weights(run: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batch_interval_checkpoints_resume_exactly_without_loading_skipped_batches(
        tmp_path: Path) -> None:
    whole = runner(tmp_path / "whole").run()
    with pytest.raises(RunError):
        runner(tmp_path / "cut", At(epoch=2, n=8), checkpoint_every=7).run()
    names = [p.name for _, p in ResumeStore.of_logdir(tmp_path / "cut").files()]
    assert names == ["epoch-000002-step-000000020.pth", "epoch-000001.pth"]
    resumed = runner(tmp_path / "cut", resume=True, checkpoint_every=7)
    assert resumed.resume_position == ("stage 's' in epoch 2, loader 'train' after batch 7, "
                                       "global epoch 2")
    Counted.loads = 0
    resumed.run()
    # epoch 2: the 3 train batches not done, 12 valid samples; epoch 3: 40 + 12
    assert Counted.loads == 3 * 4 + 12 + 40 + 12
    assert same(weights(whole), weights(resumed))
    assert resumed.epoch_metrics == whole.epoch_metrics
    for log in ("logs/s.csv",):
        assert (tmp_path / "cut" / log).read_text() == (tmp_path / "whole" / log).read_text()


@needs_main_thread
def test_sigterm_stops_at_the_next_batch_boundary_with_a_checkpoint(tmp_path: Path) -> None:
    whole = runner(tmp_path / "whole").run()
    before = signal.getsignal(signal.SIGTERM)
    stopped = runner(tmp_path / "cut", At(epoch=1, n=4, send=signal.SIGTERM)).run()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the run's only
    assert stopped.stopped is not None and stopped.exception is None
    assert stopped.stopped.message().startswith(
        "stopped by SIGTERM at stage 's', epoch 1, loader 'train', batch 4: resume checkpoint "
        "written to ")
    assert stopped.stopped.checkpoint.name == "epoch-000001-step-000000004.pth"
    assert not (tmp_path / "cut" / "checkpoints" / "s.exception.pth").exists()
    resumed = runner(tmp_path / "cut", resume=True).run()
    assert same(weights(whole), weights(resumed))


@needs_main_thread
def test_a_signal_at_epoch_end_stops_after_the_epoch_checkpoint(tmp_path: Path) -> None:
    stopped = runner(tmp_path, At(epoch=2, send=signal.SIGUSR1, event="epoch_end")).run()
    assert stopped.stopped.message().startswith("stopped by SIGUSR1 at stage 's', end of epoch 2")
    assert stopped.stopped.checkpoint.name == "epoch-000002.pth"
    assert stopped.global_epoch == 2


@needs_main_thread
def test_a_loader_that_cannot_be_skipped_into_is_named(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runner(tmp_path / "a", stream=True, checkpoint_every=2).run()
    texts = [str(w.message) for w in seen if "mid-epoch" in str(w.message)]
    assert texts == ["stage 's' > loader 'train': no mid-epoch checkpoint is written in this "
                     "loader (its dataset is an IterableDataset, whose position is its own); "
                     "the run checkpoints at the epoch's end. Give it a torch DataLoader over a "
                     "map-style dataset to checkpoint inside it"]
    stopped = runner(tmp_path / "b", At(epoch=2, n=2, send=signal.SIGTERM), stream=True).run()
    assert stopped.stopped.checkpoint is None
    assert "without a checkpoint there (loader 'train': its dataset is an IterableDataset" in (
        stopped.stopped.message())
    assert "--resume continues from the last complete checkpoint" in stopped.stopped.message()


def test_checkpoint_every_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="checkpoint_every must be a number of batches"):
            runner(tmp_path, checkpoint_every=bad)
    assert main(["run", "x.py", "--checkpoint-every", "2"]) == 2
    assert "--checkpoint-every writes into the logdir: give --logdir DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "x.py", "--logdir", "l", "--checkpoint-every", "0"])
    assert "--checkpoint-every '0': give a number of batches >= 1" in capsys.readouterr().err
