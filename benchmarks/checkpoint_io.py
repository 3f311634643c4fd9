"""Checkpoint I/O for a ~50M-parameter model: the epoch-end stall and the peak memory of a resume,
the current path against the one before it, measured side by side in one run.

One stage of a real run (4 Linear layers of 3584 x 3584, SGD with momentum: a 411 MB checkpoint;
every epoch is made the best, so the checkpoint callback writes ``last``, ``best`` and
``epochN`` each epoch). At each epoch end, just before the checkpoint callback, a timing
callback first does what the previous path did for that epoch, into another folder — serialise
the callback's data, write it three times (each fsync-ed), serialise the resume snapshot, write it
and hash it — and times it; then the real path runs (one serialisation, streamed to disk and
hashed on the way, the other names hard links, a small resume file) and is timed up to the next
epoch's start. The figure is the ratio of the median stalls.

Resume memory: a fresh process per measurement builds the model and optimizer, then loads the
checkpoint into them — the previous way (the file read into memory, hashed, ``torch.load`` from
the bytes) or the current one (`load_checkpoint`: checksums streamed in chunks, ``mmap=True``);
the growth of its peak resident memory (``ru_maxrss``) is divided by the checkpoint's size.
The training runs in a process of its own too: Linux carries a process's peak over ``exec``, so
a child of a large process would start from its parent's peak.

    python benchmarks/checkpoint_io.py     # prints e.g. "epoch-end stall new / old: 0.33 ..."
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
from stagegraph.runtime.callbacks.checkpoint import checkpoint_data
from stagegraph.runtime.callbacks.files import atomic_write, load_state_into, torch_bytes
from stagegraph.runtime.resume import ResumeStore, load_checkpoint
from stagegraph.runtime.resume.snapshot import snapshot

WIDTH, LAYERS, EPOCHS = 3584, 4, 2


def make_model() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(LAYERS):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)


def loader() -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(2, WIDTH, generator=generator), torch.tensor([1, 2]))
    return DataLoader(data, batch_size=2)


class AlwaysBest(sg.Callback):
    """Every epoch is the best: the previous path's worst case, four full writes per epoch."""

    order = sg.CallbackOrder.Validation + 1

    def on_epoch_end(self, runner: Any) -> None:
        runner.is_best_valid = True


class Stall(sg.Callback):
    """Runs the previous path just before the checkpoint callback, then times the current one."""

    order = sg.CallbackOrder.External

    def __init__(self, folder: Path) -> None:
        super().__init__(before=("checkpoint",))
        self.folder = folder
        self.old: list[float] = []
        self.new: list[float] = []
        self._since: float | None = None

    def on_epoch_start(self, runner: Any) -> None:
        self._stop()

    def on_stage_end(self, runner: Any) -> None:
        self._stop()

    def on_epoch_end(self, runner: Any) -> None:
        start = time.perf_counter()
        previous_path(runner, self.folder)
        self._since = time.perf_counter()
        self.old.append(self._since - start)

    def _stop(self) -> None:
        if self._since is not None:
            self.new.append(time.perf_counter() - self._since)
            self._since = None


def previous_path(runner: Any, folder: Path) -> None:
    """What the checkpoint callback and the resume session did at an epoch end before."""
    callback = runner.callbacks["checkpoint"]
    stage = runner.stage_name
    names = [f"{stage}.last.pth", *([f"{stage}.best.pth"] if runner.is_best_valid else [])]
    score = float(runner.valid_metrics[runner.main_metric])
    kept = callback._rank(score, runner)[2]  # the epoch file the callback is about to keep
    names += [kept] if kept else []
    data = torch_bytes(checkpoint_data(runner))
    for name in names:
        atomic_write(folder / name, data)
    payload = torch_bytes(snapshot(runner, shared_model=None, carried={}, check=False))
    atomic_write(folder / "resume.pth", payload)
    hashlib.sha256(payload).hexdigest()


def train(logdir: Path, old_folder: Path) -> dict[str, Any]:
    stall = Stall(old_folder)
    exp = sg.Experiment("checkpoint_io", seed=0, model=make_model,
                        criterion=nn.CrossEntropyLoss, optimizer=make_optimizer)
    exp.add_stage("train", num_epochs=EPOCHS, loaders={"train": loader, "valid": loader},
                  callbacks={"always_best": AlwaysBest(), "stall": stall})
    exp.lints = {"SF517": "allow"}  # AlwaysBest writes valid.is_best without declaring it
    plan = sg.compile(exp, device="cpu", verbose=False, logdir=str(logdir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sg.Runner(plan).run()
    return {"old": stall.old, "new": stall.new}


# --- resume memory, one fresh process per measurement ------------------------------------------
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
    parser.add_argument("--train", nargs=2, metavar=("LOGDIR", "OLD"), help=argparse.SUPPRESS)
    parser.add_argument("--resume-memory", nargs=2, metavar=("WAY", "PATH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.train:
        print(json.dumps(train(Path(args.train[0]), Path(args.train[1]))))
        return
    if args.resume_memory:
        way, path = args.resume_memory
        print(json.dumps({"bytes": resume_memory(way, Path(path))}))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        logdir, old_folder = Path(tmp) / "run", Path(tmp) / "old"
        old_folder.mkdir()
        stall = child("--train", str(logdir), str(old_folder))
        old_file = old_folder / "resume.pth"
        new_file = ResumeStore.of_logdir(logdir).files()[0][1]
        size = old_file.stat().st_size
        old_memory = child("--resume-memory", "old", str(old_file))["bytes"]
        new_memory = child("--resume-memory", "new", str(new_file))["bytes"]
    parameters = sum(p.numel() for p in make_model().parameters())
    old, new = statistics.median(stall["old"]), statistics.median(stall["new"])
    print(f"model: {parameters / 1e6:.1f}M parameters, checkpoint {size / 1e6:.0f} MB, "
          f"{EPOCHS} epochs, every one the best")
    print(f"epoch-end stall: old {old:.2f} s (2 serialisations, 4 full writes), new {new:.2f} s "
          "(1 serialisation, 1 full write, 3 links)")
    print(f"peak resume memory / checkpoint size: old {old_memory / size:.2f}, "
          f"new {new_memory / size:.2f}")
    print(f"epoch-end stall new / old: {new / old:.2f}")


if __name__ == "__main__":
    main()
