"""Compile synthetic experiments of growing size; print time per callback and the scaling exponent.

Each stage has C callbacks in mixed order buckets with dataflow edges (callback i reads what
callbacks i-1 and i-3 write, metric callbacks feed an aggregator) and an explicit ``after`` edge;
one experiment-scoped callback migrates through every stage. The figure to compare is the fitted
exponent k of ``time ~ callbacks^k``: 1.0 is linear.

    python benchmarks/compile_scaling.py            # up to 1,000 stages x 100 callbacks
    python benchmarks/compile_scaling.py --quick    # smaller sizes
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import stagegraph as sg


class Synthetic(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        pass


class Logger(sg.Callback):
    scope = sg.CallbackScope.experiment
    order = sg.CallbackOrder.Logging
    reads = ("epoch_metric.*",)

    def on_epoch_end(self, runner: Any) -> None:
        pass


BUCKETS = [int(b) for b in sg.CallbackOrder]


def build(stages: int, callbacks: int) -> sg.Experiment:
    exp = sg.Experiment("scaling", model=object(), criterion=object(), optimizer=object())
    for s in range(stages):
        cbs: dict[str, sg.Callback] = {}
        for i in range(callbacks):
            reads = [f"metric.k{j}" for j in (i - 1, i - 3) if j >= 0]
            after = [f"cb{i - 2}"] if i >= 2 and i % 5 == 0 else []
            cbs[f"cb{i}"] = Synthetic(order=BUCKETS[i % len(BUCKETS)], reads=reads,
                                      writes=[f"metric.k{i}"], after=after)
        if s == 0:
            cbs["logger"] = Logger()
        exp.add_stage(f"stage{s}", num_epochs=1, loaders={"train": [], "valid": []},
                      callbacks=cbs)
    return exp


def measure(stages: int, callbacks: int, repeat: int) -> float:
    exp = build(stages, callbacks)
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        plan = sg.compile(exp, logdir="runs")
        best = min(best, time.perf_counter() - start)
    assert plan.ok, plan.errors[:3]
    return best


def fit_exponent(points: list[tuple[int, float]]) -> float:
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few seconds)")
    args = parser.parse_args()
    sizes = [(10, 10), (10, 100), (30, 100), (100, 100), (300, 100), (1000, 100)]
    if args.quick:
        sizes = sizes[:4]
    points = []
    print(f"{'stages':>7} {'callbacks':>10} {'total':>8} {'seconds':>9} {'us/callback':>12}")
    for stages, callbacks in sizes:
        total = stages * (callbacks + 7)  # + the defaults the compiler adds per stage
        seconds = measure(stages, callbacks, repeat=3 if total < 20_000 else 1)
        points.append((total, seconds))
        print(f"{stages:>7} {callbacks:>10} {total:>8} {seconds:>9.3f} "
              f"{seconds / total * 1e6:>12.1f}")
    print(f"scaling exponent (time ~ callbacks^k): k = {fit_exponent(points):.2f}")


if __name__ == "__main__":
    main()
