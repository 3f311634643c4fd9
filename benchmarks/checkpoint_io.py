"""Checkpoint I/O for a ~50M-parameter model: the epoch-end stall with checkpoints written on the
training thread and in the background, side by side in one run, and the peak memory of a resume.

One stage of a real run (4 Linear layers of 3584 x 3584, SGD with momentum: a 411 MB checkpoint;
every epoch is made the best, so the checkpoint callback writes ``last``, ``best`` and
``epochN`` each epoch, then the resume checkpoint). The same training runs twice per round, in
processes of their own: with ``sync_checkpoints=True`` (serialise, write, fsync, hash and link on
the training thread) and with the default background writer (the training thread copies the
state to host memory and goes on; the next epoch end waits for whatever is left of the write).
The stall of an epoch end is the time the training thread spends on its checkpoint: from just
before the checkpoint callback to the start of the next epoch, plus the time the runner then
waits for the writer (before the next epoch's checkpoint, or at the end of the run). The figure
is the ratio of the median stalls. An epoch trains ``--batches`` batches (a few seconds): the
background write is hidden as long as an epoch takes longer than the write. The training time
of the epochs is printed too: the writer's thread shares the CPU with training.

Resume memory: a fresh process per measurement builds the model and optimizer, then loads the
checkpoint into them — the previous way (the whole checkpoint in one file, read into memory,
hashed, ``torch.load`` from the bytes) or the current one (`load_checkpoint`: checksums streamed
in chunks, ``mmap=True``); the growth of its peak resident memory (``ru_maxrss``) is divided by
the checkpoint's size. Linux carries a process's peak over ``exec``, so each measurement, and
each training, runs in a process of its own.

    python benchmarks/checkpoint_io.py   # ends "epoch-end stall background / synchronous: 0.10 ..."
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime.callbacks.files import load_state_into
from stagegraph.runtime.resume import ResumeStore, load_checkpoint

WIDTH, LAYERS, EPOCHS = 3584, 4, 3


def make_model() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(LAYERS):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)


def loader(batches: int) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(2 * batches, WIDTH, generator=generator),
                         torch.randint(0, WIDTH, (2 * batches,), generator=generator))
    return DataLoader(data, batch_size=2)


class AlwaysBest(sg.Callback):
    """Every epoch is the best: the checkpoint callback writes all of its files each epoch."""

    order = sg.CallbackOrder.Validation + 1

    def on_epoch_end(self, runner: Any) -> None:
        runner.is_best_valid = True


class Stall(sg.Callback):
    """Times the training thread from just before the checkpoint callback to the next epoch's
    start, and reads how long the runner waited for the writer meanwhile."""

    order = sg.CallbackOrder.External

    def __init__(self) -> None:
        super().__init__(before=("checkpoint",))
        self.segments: list[float] = []  # epoch end -> next epoch start (or stage end)
        self.waited_at: list[float] = []  # the writer's total wait when each epoch end began
        self.epochs: list[float] = []  # epoch start -> epoch end: the training
        self._since: float | None = None
        self._started = 0.0

    def on_epoch_start(self, runner: Any) -> None:
        self._stop()
        self._started = time.perf_counter()

    def on_stage_end(self, runner: Any) -> None:
        self._stop()

    def on_epoch_end(self, runner: Any) -> None:
        self._since = time.perf_counter()
        self.epochs.append(self._since - self._started)
        self.waited_at.append(runner.checkpoint_writer.waited)

    def _stop(self) -> None:
        if self._since is not None:
            self.segments.append(time.perf_counter() - self._since)
            self._since = None


def train(mode: str, logdir: Path, batches: int) -> dict[str, Any]:
    stall = Stall()
    exp = sg.Experiment("checkpoint_io", seed=0, model=make_model,
                        criterion=nn.CrossEntropyLoss, optimizer=make_optimizer)
    data = {"train": lambda: loader(batches), "valid": lambda: loader(1)}
    exp.add_stage("train", num_epochs=EPOCHS, loaders=data,
                  callbacks={"always_best": AlwaysBest(), "stall": stall})
    exp.lints = {"SF517": "allow"}  # AlwaysBest writes valid.is_best without declaring it
    plan = sg.compile(exp, device="cpu", verbose=False, logdir=str(logdir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = sg.Runner(plan, sync_checkpoints=mode == "sync").run()
    # The wait for epoch i's write happens before epoch i + 1's end (the last: at the run's end).
    waited = [*stall.waited_at[1:], runner.checkpoint_writer.waited]
    waits = [after - before for before, after in zip(stall.waited_at, waited, strict=True)]
    return {"stalls": [s + w for s, w in zip(stall.segments, waits, strict=True)],
            "waits": waits, "epochs": stall.epochs}


# --- resume memory, one fresh process per measurement ------------------------------------------
def whole_file(new: Path, old: Path) -> None:
    """The checkpoint ``new`` (and its blobs) saved whole into one file, as it used to be."""
    torch.save(load_checkpoint(new, ResumeStore(new.parent).index().get(new.name)), old)


def resume_memory(way: str, path: Path) -> int:
    """Bytes the peak resident memory grows by while a checkpoint loads into a built model."""
    model = make_model()
    optimizer = make_optimizer(model)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if way == "old":
        payload = path.read_bytes()
        hashlib.sha256(payload).hexdigest()
        data = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    else:
        data = load_checkpoint(path, ResumeStore(path.parent).index().get(path.name))
    load_state_into(model, data["model"])
    optimizer.load_state_dict(data["optimizer"])
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # KiB on Linux


def child(*args: str) -> Any:
    """Run this script with ``args`` in a fresh process; what it prints, as JSON."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a temporary folder)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="trainings of each kind, alternated (default 2)")
    parser.add_argument("--batches", type=int, default=20,
                        help="training batches per epoch (default 20)")
    parser.add_argument("--train", nargs=2, metavar=("MODE", "LOGDIR"), help=argparse.SUPPRESS)
    parser.add_argument("--whole-file", nargs=2, metavar=("NEW", "OLD"), help=argparse.SUPPRESS)
    parser.add_argument("--resume-memory", nargs=2, metavar=("WAY", "PATH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.train:
        print(json.dumps(train(args.train[0], Path(args.train[1]), args.batches)))
        return
    if args.whole_file:
        whole_file(Path(args.whole_file[0]), Path(args.whole_file[1]))
        print("{}")
        return
    if args.resume_memory:
        way, path = args.resume_memory
        print(json.dumps({"bytes": resume_memory(way, Path(path))}))
        return
    results: dict[str, list[dict[str, Any]]] = {"sync": [], "background": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in range(args.rounds):
            for mode in results:
                logdir = Path(tmp) / f"{mode}{n}"
                results[mode].append(child("--train", mode, str(logdir),
                                           "--batches", str(args.batches)))
        new_file = ResumeStore.of_logdir(Path(tmp) / "background0").files()[0][1]
        old_file = Path(tmp) / "whole.pth"
        child("--whole-file", str(new_file), str(old_file))
        size = old_file.stat().st_size
        old_memory = child("--resume-memory", "old", str(old_file))["bytes"]
        new_memory = child("--resume-memory", "new", str(new_file))["bytes"]
    parameters = sum(p.numel() for p in make_model().parameters())

    def median(mode: str, key: str) -> float:
        return statistics.median(x for run in results[mode] for x in run[key])

    stall = {mode: median(mode, "stalls") for mode in results}
    epoch = {mode: median(mode, "epochs") for mode in results}
    print(f"model: {parameters / 1e6:.1f}M parameters, checkpoint {size / 1e6:.0f} MB; "
          f"{args.rounds} x {EPOCHS} epochs of each kind, {args.batches} batches each, every "
          "epoch the best")
    print(f"epoch-end stall (median): synchronous {stall['sync']:.2f} s (serialise, write, "
          f"fsync, hash, link), background {stall['background']:.2f} s (copy to host memory; "
          f"of which waiting for the previous write {median('background', 'waits'):.2f} s)")
    print(f"training time of an epoch (median): synchronous {epoch['sync']:.2f} s, background "
          f"{epoch['background']:.2f} s (the writer's thread shares the CPU)")
    print(f"peak resume memory / checkpoint size: old {old_memory / size:.2f}, "
          f"new {new_memory / size:.2f}")
    print(f"epoch-end stall background / synchronous: {stall['background'] / stall['sync']:.2f} "
          "(target <= 0.25)")

if __name__ == "__main__":
    main()
