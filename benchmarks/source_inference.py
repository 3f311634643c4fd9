"""What reading a callback class's source costs, next to what compiling one callback entry costs.

The compiler reads each callback class once (``ast`` over its methods' source, cached per class)
and then reuses the answer for every entry of that class, in every stage. So the figure to compare
is the ratio of the two, measured side by side in one run: the first (uncached) inference of a
class, and the compile time per callback entry of a realistic experiment. A ratio of 10 means a
new class costs as much as ten more callback entries.

Classes are generated into a module file (so their source is readable, as a user's is): three
event methods each, with constant-key accesses, a branch and an alias among ordinary code.

    python benchmarks/source_inference.py            # prints the ratio, then both figures
"""

from __future__ import annotations

import argparse
import importlib.util
import linecache
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import stagegraph as sg
from stagegraph.compiler import inference

CLASS_TEMPLATE = '''
class Callback{i}(sg.Callback):
    """A metric and a logger in one, as users write them."""

    order = sg.CallbackOrder.Metric

    def on_loader_start(self, runner: Any) -> None:
        self.total, self.count = 0.0, 0

    def on_batch_end(self, runner: Any) -> None:
        logits, targets = runner.output["logits"], runner.input["targets"]
        hits = (logits.argmax(1) == targets).float()
        metrics = runner.batch_metrics
        metrics["accuracy{i}"] = hits.mean()
        if runner.is_train_loader:
            self.total += float(metrics["loss"]) * len(targets)
            self.count += len(targets)

    def on_loader_end(self, runner: Any) -> None:
        runner.loader_metrics["mean_loss{i}"] = self.total / max(self.count, 1)
        best = runner.valid_metrics.get("accuracy{i}", 0.0)
        print(runner.loader_name, runner.loader_metrics["mean_loss{i}"], best)
'''


def write_module(folder: Path, classes: int) -> ModuleType:
    text = "from typing import Any\n\nimport stagegraph as sg\n" + "".join(
        CLASS_TEMPLATE.format(i=i) for i in range(classes))
    path = folder / "generated_callbacks.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("generated_callbacks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def infer_per_class(classes: list[type]) -> float:
    """Seconds to infer one class the first time (caches, source lines included, cleared)."""
    inference._infer.cache_clear()
    inference._methods.cache_clear()
    linecache.clearcache()
    start = time.perf_counter()
    for cls in classes:
        inference.infer_accesses(cls)
    return (time.perf_counter() - start) / len(classes)


def compile_per_entry(classes: list[type], stages: int, per_stage: int) -> float:
    """Seconds per callback entry (defaults included) to compile an experiment of those classes,
    every class already read (the compile itself is what is measured)."""
    exp = sg.Experiment("bench", model=object(), criterion=object(), optimizer=object())
    for s in range(stages):
        callbacks: dict[str, sg.Callback] = {
            f"cb{i}": classes[(s * per_stage + i) % len(classes)]() for i in range(per_stage)}
        exp.add_stage(f"stage{s}", loaders={"train": [], "valid": []}, callbacks=callbacks)
    plan = sg.compile(exp)  # warms the inference caches
    assert plan.ok, plan.errors[:3]
    entries = sum(len(stage.callbacks) for stage in plan.stages)
    start = time.perf_counter()
    sg.compile(exp)
    return (time.perf_counter() - start) / entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        module = write_module(Path(folder), args.classes)
        classes = [getattr(module, f"Callback{i}") for i in range(args.classes)]
        per_class, per_entry = [], []
        for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
            per_class.append(infer_per_class(classes))
            per_entry.append(compile_per_entry(classes, stages=20, per_stage=50))
        accesses = len(inference.infer_accesses(classes[0]))
    infer_us = statistics.median(per_class) * 1e6
    entry_us = statistics.median(per_entry) * 1e6
    print(f"ratio source inference per class / compile per callback entry: "
          f"{infer_us / entry_us:.1f}")
    print(f"  inference {infer_us:.0f} us per class (first time; 3 methods, {accesses} accesses); "
          f"compile {entry_us:.0f} us per callback entry")


if __name__ == "__main__":
    main()
