"""Per-batch time of stagegraph with the batch fast path over a hand-written DataLoader loop.

All train the same MLP (32 -> 64 -> 10) on the same in-memory data: a `DataLoader` over a
`TensorDataset`, batch 32, shuffled train loader and a sequential valid loader; forward,
cross-entropy, backward and an Adam step on train batches, a loss mean weighted by batch size per
loader. Three variants, each run in a fresh process (one thread), interleaved round after round
so machine noise hits all alike:

- ``hand``: the loop a careful user writes, iterating the DataLoader;
- ``lean``: stagegraph without logging or logdir (``verbose=False``) and ``fast_path=False``;
- ``fast``: the same with the batch fast path (the default).

Each process warms up with one epoch, then times ``--epochs`` epochs ``--repeats`` times and
keeps the fastest (a shared machine's load spikes only ever slow a run down). The clock is the
process's CPU time (``--clock cpu``, the default: other processes' load hardly moves it, and with
one thread and no logdir the process does nothing else) or the wall clock (``--clock wall``).
Printed: per-batch times (medians over the rounds) and the ratios ``lean`` / ``hand``, ``fast`` /
``hand`` and ``fast`` / ``lean``, each the median of the per-round ratios with their min-max.

    python benchmarks/fast_path.py               # ~2 minutes
    python benchmarks/fast_path.py --rounds 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

VARIANTS = ("hand", "lean", "fast")
SEED = 0
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.process_time


def loaders(batches: int) -> tuple[Any, Any]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(SEED)

    def data(samples: int) -> TensorDataset:
        return TensorDataset(torch.randn(samples, 32, generator=generator),
                             torch.randint(0, 10, (samples,), generator=generator))

    train = DataLoader(data(batches * 32), batch_size=32, shuffle=True)
    valid = DataLoader(data(batches * 8), batch_size=32)
    return train, valid


def make_model() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


def hand_written(batches: int, epochs: int) -> float:
    """The hand-written loop over the DataLoaders; returns seconds spent in the epochs."""
    import torch
    from torch import nn

    train, valid = loaders(batches)
    model = make_model()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = float("inf")
    start = clock()
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
    return clock() - start


def with_stagegraph(batches: int, epochs: int, fast_path: bool) -> float:
    import torch
    from torch import nn

    import stagegraph as sg

    class StageClock(sg.Callback):
        def on_stage_start(self, runner: Any) -> None:
            self.start = clock()

        def on_stage_end(self, runner: Any) -> None:
            self.seconds = clock() - self.start

    timer = StageClock()
    train, valid = loaders(batches)
    exp = sg.Experiment("fast_path", seed=SEED, model=make_model, criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
                        fast_path=fast_path)
    exp.add_stage("train", num_epochs=epochs, loaders={"train": train, "valid": valid},
                  callbacks={"clock": timer})
    runner = sg.run(exp, device="cpu", verbose=False)
    assert runner.fast_path["train"].used is fast_path, runner.fast_path
    return float(timer.seconds)


def child(variant: str, batches: int, epochs: int, repeats: int, clock_name: str) -> None:
    """In a fresh process: warm up with one epoch, then print seconds per batch as JSON (the
    fastest of ``repeats`` timed runs)."""
    import torch

    global clock
    clock = CLOCKS[clock_name]
    torch.set_num_threads(1)

    def once(n: int) -> float:
        if variant == "hand":
            return hand_written(batches, n)
        return with_stagegraph(batches, n, fast_path=variant == "fast")

    once(1)
    per_epoch = batches + batches // 4
    best = min(once(epochs) for _ in range(repeats))
    print(json.dumps({"variant": variant, "per_batch": best / (per_epoch * epochs)}))


def run_child(variant: str, args: argparse.Namespace) -> float:
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--batches",
                           str(args.batches), "--epochs", str(args.epochs), "--repeats",
                           str(args.repeats), "--clock", args.clock],
                          capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["per_batch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per process")
    parser.add_argument("--batches", type=int, default=200, help="train batches per epoch")
    parser.add_argument("--clock", choices=CLOCKS, default="cpu")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batches, args.epochs, args.repeats, args.clock)
        return
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds):
        order = VARIANTS[round_ % 3:] + VARIANTS[:round_ % 3]  # rotate who goes first
        for variant in order:
            times[variant].append(run_child(variant, args))
    batches = (args.batches + args.batches // 4) * args.epochs
    medians = "; ".join(f"{v} {statistics.median(times[v]) * 1e6:.1f} us" for v in VARIANTS)
    print(f"per batch (medians of {args.rounds} rounds of fresh processes, each the fastest of "
          f"{args.repeats} runs of {batches} batches, {args.clock} time): {medians}")
    for variant, base, label in (
            ("lean", "hand", "stagegraph lean, no fast path / hand-written DataLoader loop"),
            ("fast", "hand", "stagegraph lean, fast path / hand-written DataLoader loop"),
            ("fast", "lean", "stagegraph lean: fast path / DataLoader")):
        ratios = [t / b for t, b in zip(times[variant], times[base], strict=True)]
        print(f"ratio {label}: {statistics.median(ratios):.3f} "
              f"(per round {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
