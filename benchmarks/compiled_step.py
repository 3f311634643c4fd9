"""Per-batch time of a compiled stage (``compile=``) over the same stage run eagerly, and the
compile time, for the compute-bound MLP (512 -> 2048 -> 2048 -> 10, batch 64, SGD).

One experiment, one process: its stages alternate eager and compiled (``eager-1, compiled-1,
eager-2, compiled-2, ...``) on the same model, so machine noise hits both alike. Each stage runs
two epochs; the per-batch time is a train loader's time over its batches in the second epoch
(the first epoch of a compiled stage includes compiling: every compiled stage compiles again,
since compilation is once per stage). The compile time is the first epoch's time less the second
epoch's, in a compiled stage: the first compiled stage compiles from nothing (inductor's on-disk
caches go to a fresh temporary folder unless ``--warm-cache``), later ones find dynamo warmed up
and inductor's caches filled. One thread, so that the figure is the kernels', not the scheduler's.

    python benchmarks/compiled_step.py                       # inductor (needs a C++ compiler)
    python benchmarks/compiled_step.py --backend aot_eager   # the machinery without codegen
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg


class LoaderTimes(sg.Callback):
    """Seconds and batches of each train loader run, by (stage, epoch)."""

    order = sg.CallbackOrder.External

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[tuple[str, int], tuple[float, int]] = {}
        self._start = 0.0

    def on_loader_start(self, runner: Any) -> None:
        self._start = time.perf_counter()

    def on_loader_end(self, runner: Any) -> None:
        if runner.is_train_loader:
            self.times[(runner.stage_name, runner.epoch)] = (
                time.perf_counter() - self._start, runner.loader_batch_step)


def build(rounds: int, batches: int, options: dict[str, Any]) -> tuple[sg.Experiment,
                                                                         LoaderTimes]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batches * 64, 512, generator=generator)
    y = torch.randint(0, 10, (batches * 64,), generator=generator)
    loaders = {"train": DataLoader(TensorDataset(x, y), batch_size=64),
               "valid": DataLoader(TensorDataset(x[:256], y[:256]), batch_size=64)}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                          nn.Linear(2048, 10))
    times = LoaderTimes()
    exp = sg.Experiment("compiled-step", model=model, criterion=nn.CrossEntropyLoss(),
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=1e-3))
    for index in range(1, rounds + 1):
        for kind, compile in (("eager", False), ("compiled", options)):
            exp.add_stage(f"{kind}-{index}", num_epochs=2, loaders=loaders, compile=compile,
                          callbacks={"times": times})
    return exp, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--mode", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=24, help="train batches per epoch")
    parser.add_argument("--warm-cache", action="store_true",
                        help="keep inductor's on-disk cache (default: a fresh one)")
    args = parser.parse_args()
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    torch.set_num_threads(1)
    options = {"backend": args.backend, **({"mode": args.mode} if args.mode else {})}
    exp, times = build(args.rounds, args.batches, options)
    plan = sg.compile(exp, device="cpu", verbose=False)
    assert plan.ok, plan.errors
    runner = sg.Runner(plan).run()
    per_batch: dict[str, list[float]] = {"eager": [], "compiled": []}
    compile_times = []
    for index in range(1, args.rounds + 1):
        for kind in per_batch:
            first, _ = times.times[(f"{kind}-{index}", 1)]
            second, count = times.times[(f"{kind}-{index}", 2)]
            per_batch[kind].append(second / count)
            if kind == "compiled":
                compile_times.append(first - second)
    ratios = [c / e for c, e in zip(per_batch["compiled"], per_batch["eager"], strict=True)]
    print(f"torch {torch.__version__}, backend {args.backend!r}"
          + (f", mode {args.mode!r}" if args.mode else "") + ", 1 thread, MLP 512-2048-2048-10, "
          f"batch 64, {args.batches} train batches per epoch, {args.rounds} rounds")
    for kind, values in per_batch.items():
        print(f"  {kind:8} per batch: {statistics.median(values) * 1e3:7.2f} ms "
              f"(rounds {min(values) * 1e3:.2f}-{max(values) * 1e3:.2f})")
    later = compile_times[1:] or compile_times
    print(f"  compile time: first compiled stage {compile_times[0]:.2f} s, later stages "
          f"{statistics.median(later):.2f} s ({min(later):.2f}-{max(later):.2f}); "
          f"compilations per stage: {runner.compilations[f'compiled-{args.rounds}']}")
    print(f"ratio compiled / eager per batch: {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
