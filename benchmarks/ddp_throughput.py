"""Training throughput of 1 process against 2 DDP processes (torchrun, gloo) on this machine.

The default model is a small CNN (three 3x3 convolutions, 16-32-32 channels, on 3x32x32 inputs;
35 k parameters) on 1024 in-memory samples, global batch 64: about 30 MFLOP per sample forward,
so the forward and backward passes dominate and the gradient all-reduce (140 kB per step) does
not. ``--model mlp`` trains an MLP (256-1024-1024-10, 1.3 M parameters, 4096 samples, global
batch 128) instead, whose 5 MB all-reduce per step is the opposite case. Each configuration is a
fresh ``stagegraph run`` of this file; the train loaders of every epoch after the first (a
warm-up) are timed and their samples counted over all ranks. Every process runs with
``OMP_NUM_THREADS=1``, so 2 processes use 2 cores and 1 process uses 1: the comparison is of
processes, not of threads. A third line shows 1 process with 2 threads, the other way to use
both cores. Configurations are interleaved over ``--rounds`` and the median is reported.

    python benchmarks/ddp_throughput.py      # prints samples/s per configuration and the ratio

This file is also the experiment each configuration runs (``experiment`` below).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg

MODEL = os.environ.get("SG_BENCH_MODEL", "cnn")
#: model -> (input shape, samples per epoch, global batch)
SIZES = {"cnn": ((3, 32, 32), 1024, 64), "mlp": ((256,), 4096, 128)}
SHAPE, SAMPLES, GLOBAL_BATCH = SIZES[MODEL]
CLASSES = 10
EPOCHS = 3
ROOT = Path(__file__).resolve().parent.parent


def dataset(samples: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(samples, *SHAPE, generator=generator),
                         torch.randint(0, CLASSES, (samples,), generator=generator))


def train_loader() -> DataLoader:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DataLoader(dataset(SAMPLES), batch_size=GLOBAL_BATCH // world, shuffle=True)


def valid_loader() -> DataLoader:
    return DataLoader(dataset(256), batch_size=GLOBAL_BATCH)


def model() -> nn.Module:
    if MODEL == "mlp":
        return nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, CLASSES))
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, CLASSES))


class Throughput(sg.Callback):
    """Times the train loaders after the first epoch; the master writes samples/s (all ranks)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self.samples = 0
        self._start = 0.0

    def on_loader_start(self, runner: Any) -> None:
        self._start = time.perf_counter()

    def on_loader_end(self, runner: Any) -> None:
        if runner.is_train_loader and runner.epoch > 1:
            self.seconds += time.perf_counter() - self._start
            world = int(os.environ.get("WORLD_SIZE", "1"))
            self.samples += runner.loader_sample_step * world

    def on_experiment_end(self, runner: Any) -> None:
        if runner.is_distributed_master:
            Path(os.environ["SG_BENCH_OUT"]).write_text(json.dumps(
                {"samples_per_second": self.samples / self.seconds}), encoding="utf-8")


experiment = sg.Experiment("ddp_throughput", model=model, criterion=nn.CrossEntropyLoss,
                           optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
                           device="cpu")
experiment.add_stage("train", num_epochs=EPOCHS,
                     loaders={"train": train_loader, "valid": valid_loader},
                     callbacks={"throughput": Throughput()})

CONFIGURATIONS = {
    "1 process, 1 thread": ([], "1"),
    "2 processes (DDP), 1 thread each": (["--ddp", "2"], "1"),
    "1 process, 2 threads": ([], "2"),
}


def measure(extra: list[str], threads: str, model_name: str) -> float:
    """Samples per second of one fresh ``stagegraph run`` of this file."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "throughput.json"
        paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "OMP_NUM_THREADS": threads, "SG_BENCH_OUT": str(out),
               "SG_BENCH_MODEL": model_name, "PYTHONPATH": os.pathsep.join(paths)}
        done = subprocess.run([sys.executable, "-m", "stagegraph", "run", __file__, "--quiet",
                               *extra], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"stagegraph run {' '.join(extra)} failed (exit {done.returncode}):"
                             f"\n{done.stderr}")
        return float(json.loads(out.read_text())["samples_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", choices=sorted(SIZES), default="cnn")
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, (extra, threads) in CONFIGURATIONS.items():
            results[name].append(measure(extra, threads, args.model))
    # Other processes on the machine skew the figures; the load average says whether there were.
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    shape, samples, batch = SIZES[args.model]
    print(f"{os.cpu_count()} CPU core(s), OMP_NUM_THREADS per process as shown; {args.model} on "
          f"inputs {shape}, global batch {batch}, {samples} samples x {EPOCHS - 1} timed "
          f"epoch(s), median of {args.rounds} round(s)")
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        rounds = ", ".join(f"{v:.0f}" for v in results[name])
        print(f"  {name:<34} {value:8.0f} samples/s   (rounds: {rounds})")
    single, ddp = medians["1 process, 1 thread"], medians["2 processes (DDP), 1 thread each"]
    print(f"ratio 2 processes / 1 process: {ddp / single:.2f}")


if __name__ == "__main__":
    main()
