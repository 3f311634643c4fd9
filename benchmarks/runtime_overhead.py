"""Per-batch time of stagegraph as a ratio to a hand-written PyTorch loop on the same DataLoader.

Every run is a fresh process (``--worker``), so neither side inherits a warm allocator or cache
from the other; the runs are interleaved round by round (the order rotates each round), and each
stagegraph run is divided by the hand-written run of its round and model, so machine noise that
lasts longer than a round hits both alike. Printed per model and variant: the median ratio and
its per-round min–max, of wall-clock time and of the process's CPU time (all its threads, so the
background checkpoint writer counts; on a shared, loaded machine CPU time varies much less than
wall-clock time, which includes the time other processes held the cores).

Both sides train the same MLP with Adam on the same ``DataLoader`` (a ``TensorDataset``, batch 32,
shuffled with a seeded generator, one train and one valid loader), one torch thread:
``tiny`` is 32 -> 64 -> 10 (per-batch overhead shows), ``compute`` 512 -> 2048 -> 2048 -> 10
(the model's work dominates). The hand-written loop does forward, cross-entropy, backward and
step on train batches and a loss mean weighted by batch size per loader (one ``.item()`` a batch,
as people write it). The variants (``VARIANTS``):

- ``lean``: ``sg.run(verbose=False)``, no logdir: criterion, optimizer, metric aggregation and
  validation callbacks only, batches from the DataLoader itself (``fast_path=False``);
- ``fast``: ``lean`` with the batch fast path (the default for such a loader: the DataLoader's
  batches taken with one indexing per tensor, bit-identical);
- ``full``: the full defaults with a logdir: the console's progress bar (tqdm, as on a terminal,
  redrawn every 0.2 s, written to a null terminal), the CSV logger, the best/last checkpoints and
  a resume checkpoint after every epoch (written in the background); ``fast_path=False``, so it
  measures the callbacks on the same DataLoader iteration as the hand-written loop.

    python benchmarks/runtime_overhead.py                 # 5 rounds, both models
    python benchmarks/runtime_overhead.py --rounds 3 --models tiny
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg

SEED = 0

#: name -> (layer widths, train batches per epoch, epochs)
MODELS: dict[str, tuple[tuple[int, ...], int, int]] = {
    "tiny": ((32, 64, 10), 800, 3),
    "compute": ((512, 2048, 2048, 10), 60, 2),
}
BATCH = 32


def make_loaders(model: str) -> tuple[DataLoader, DataLoader]:
    widths, batches, _ = MODELS[model]
    gen = torch.Generator().manual_seed(SEED)

    def dataset(n: int) -> TensorDataset:
        return TensorDataset(torch.randn(n * BATCH, widths[0], generator=gen),
                             torch.randint(0, widths[-1], (n * BATCH,), generator=gen))

    shuffle = torch.Generator().manual_seed(SEED)
    return (DataLoader(dataset(batches), batch_size=BATCH, shuffle=True, generator=shuffle),
            DataLoader(dataset(max(1, batches // 4)), batch_size=BATCH))


def make_model(model: str) -> nn.Module:
    torch.manual_seed(SEED)
    widths = MODELS[model][0]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


# --- the loops measured; each returns (wall, CPU) seconds spent in its epochs -----------------
def hand_written(model: str, train: DataLoader, valid: DataLoader, epochs: int
                 ) -> tuple[float, float]:
    """The loop a careful user writes by hand."""
    net = make_model(model)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    best = float("inf")
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for loader, training in ((train, True), (valid, False)):
            net.train(training)
            total, count = 0.0, 0
            with torch.set_grad_enabled(training):
                for features, targets in loader:
                    loss = criterion(net(features), targets)
                    if training:
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                    total += loss.item() * len(features)
                    count += len(features)
            if not training:
                best = min(best, total / count)
    return time.perf_counter() - start, time.process_time() - cpu


class StageClock(sg.Callback):
    """Times a stage from its start to its end; no per-batch work."""

    def on_stage_start(self, runner: Any) -> None:
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def on_stage_end(self, runner: Any) -> None:
        self.seconds = time.perf_counter() - self.start, time.process_time() - self.cpu


class NullTerminal(io.StringIO):
    """A terminal that shows nothing: the console draws its tqdm bar as on a real one."""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def stagegraph_run(model: str, train: DataLoader, valid: DataLoader, epochs: int, *,
                   full: bool, fast_path: bool = False) -> tuple[float, float]:
    from stagegraph.runtime.callbacks import ConsoleLogger

    clock = StageClock()
    exp = sg.Experiment("overhead", seed=SEED, model=lambda: make_model(model),
                        criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
                        handler=sg.SupervisedHandler("features", "targets", "logits"))
    callbacks: dict[str, sg.Callback] = {"clock": clock}
    if full:  # the default console, drawing its bar on a (null) terminal
        callbacks["console"] = ConsoleLogger(file=NullTerminal())
    exp.add_stage("train", num_epochs=epochs, loaders={"train": train, "valid": valid},
                  callbacks=callbacks, fast_path=fast_path)
    with tempfile.TemporaryDirectory() as logdir:
        sg.run(exp, device="cpu", verbose=full, logdir=logdir if full else None)
    return clock.seconds


def lean(model: str, train: DataLoader, valid: DataLoader, epochs: int) -> tuple[float, float]:
    return stagegraph_run(model, train, valid, epochs, full=False)


def fast(model: str, train: DataLoader, valid: DataLoader, epochs: int) -> tuple[float, float]:
    return stagegraph_run(model, train, valid, epochs, full=False, fast_path=True)


def full(model: str, train: DataLoader, valid: DataLoader, epochs: int) -> tuple[float, float]:
    return stagegraph_run(model, train, valid, epochs, full=True)


Loop = Callable[[str, DataLoader, DataLoader, int], tuple[float, float]]

#: The stagegraph variants, each compared with ``hand_written``. Add a variant here (a function
#: with the signature of ``lean``) and it is run and printed like the others.
VARIANTS: dict[str, Loop] = {"lean": lean, "fast": fast, "full": full}


# --- one run in this process ------------------------------------------------------------------
def worker(model: str, variant: str) -> None:
    """Warm up, time one run, print its (wall, CPU) seconds per batch as JSON, last line."""
    torch.set_num_threads(1)
    loop = hand_written if variant == "hand" else VARIANTS[variant]
    train, valid = make_loaders(model)
    epochs = MODELS[model][2]
    loop(model, _head(train), _head(valid), 1)  # first calls, allocator, imports
    batches = epochs * (len(train) + len(valid))
    wall, cpu = loop(model, train, valid, epochs)
    print(json.dumps({"wall": wall / batches, "cpu": cpu / batches}))


def _head(loader: DataLoader, batches: int = 20) -> DataLoader:
    """The first ``batches`` batches of ``loader``'s dataset, unshuffled: the warm-up."""
    size = len(loader.dataset)  # type: ignore[arg-type]  # a TensorDataset has a length
    return DataLoader(torch.utils.data.Subset(loader.dataset, range(min(size, batches * BATCH))),
                      batch_size=BATCH)


def spawn(model: str, variant: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--worker", model, variant], check=True,
                         capture_output=True, text=True, env=os.environ.copy())
    return {k: float(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    runs = [(m, v) for m in args.models for v in ("hand", *args.variants)]
    times: dict[tuple[str, str], list[dict[str, float]]] = {run: [] for run in runs}
    for r in range(args.rounds):
        shift = r % len(runs)  # rotate, so no run always goes first on a fresh machine
        for run in runs[shift:] + runs[:shift]:
            times[run].append(spawn(*run))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"{args.rounds} rounds of fresh processes, interleaved; ratio to the hand-written loop "
          "(median, per-round min-max)")
    for model in args.models:
        hand = times[(model, "hand")]
        print(f"{model}: hand-written loop {_median(hand, 'wall') * 1e6:.0f} us/batch wall, "
              f"{_median(hand, 'cpu') * 1e6:.0f} us/batch CPU")
        for variant in args.variants:
            ours = times[(model, variant)]
            print(f"  {variant:<10}" + "  ".join(_ratio(ours, hand, clock)
                                                 for clock in ("wall", "cpu")))


def _median(runs: list[dict[str, float]], clock: str) -> float:
    return statistics.median(run[clock] for run in runs)


def _ratio(ours: list[dict[str, float]], hand: list[dict[str, float]], clock: str) -> str:
    ratios = [s[clock] / h[clock] for s, h in zip(ours, hand, strict=True)]
    return (f"{clock} {statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f}, "
            f"{_median(ours, clock) * 1e6:.0f} us/batch)")


if __name__ == "__main__":
    main()
