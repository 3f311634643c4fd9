"""Per-batch time of stagegraph over a hand-written PyTorch loop doing the same work.

Both train the same MLP (32 -> 64 -> 10) on the same in-memory batches (batch 32, one train and
one valid loader): forward, cross-entropy, backward, Adam step on train batches, and a loss mean
weighted by batch size per loader, as stagegraph's default callbacks do (its console logging is
left out: ``verbose=False``, no logdir). The two are interleaved in one process, repeat after
repeat, so machine noise hits both alike; the figure is the ratio of their median per-batch times.

    python benchmarks/runtime_overhead.py            # prints e.g. "ratio stagegraph / hand-written loop: 1.03"
"""  # noqa: E501

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from torch import nn

import stagegraph as sg

SEED = 0


def make_data(batches: int, batch_size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(SEED)
    return [(torch.randn(batch_size, 32, generator=generator),
             torch.randint(0, 10, (batch_size,), generator=generator)) for _ in range(batches)]


def make_model() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


def hand_written(train: list[Any], valid: list[Any], epochs: int) -> float:
    """The loop a careful user writes by hand; returns seconds spent in the epochs."""
    model = make_model()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = float("inf")
    start = time.perf_counter()
    for _ in range(epochs):
        for loader, training in ((train, True), (valid, False)):
            model.train(training)
            total, count = 0.0, 0
            with torch.set_grad_enabled(training):
                for features, targets in loader:
                    loss = criterion(model(features), targets)
                    if training:
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                    total += loss.item() * len(features)
                    count += len(features)
            if not training:
                best = min(best, total / count)
    return time.perf_counter() - start


class StageClock(sg.Callback):
    """Times a stage from its start to its end; no per-batch work."""

    def on_stage_start(self, runner: Any) -> None:
        self.start = time.perf_counter()

    def on_stage_end(self, runner: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def with_stagegraph(train: list[Any], valid: list[Any], epochs: int) -> float:
    clock = StageClock()
    exp = sg.Experiment("overhead", seed=SEED, model=make_model, criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
                        handler=sg.SupervisedHandler("features", "targets", "logits"))
    exp.add_stage("train", num_epochs=epochs, loaders={"train": train, "valid": valid},
                  callbacks={"clock": clock})
    sg.run(exp, device="cpu", verbose=False)
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=200, help="train batches per epoch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, valid = make_data(args.batches), make_data(args.batches // 4)
    per_epoch = len(train) + len(valid)
    hand_written(train, valid, 1), with_stagegraph(train, valid, 1)  # warm up both
    hand, ours = [], []
    batches = per_epoch * args.epochs
    for repeat in range(args.repeats):
        # Alternate which goes first, so neither always runs on a warmer or cooler machine.
        order = [(hand, hand_written), (ours, with_stagegraph)]
        for times, loop in order if repeat % 2 == 0 else order[::-1]:
            times.append(loop(train, valid, args.epochs) / batches)
    h, s = statistics.median(hand), statistics.median(ours)
    print(f"hand-written loop: {h * 1e6:.1f} us/batch; stagegraph: {s * 1e6:.1f} us/batch "
          f"(medians of {args.repeats} interleaved runs, {batches} batches each)")
    print(f"ratio stagegraph / hand-written loop: {s / h:.3f}")


if __name__ == "__main__":
    main()
