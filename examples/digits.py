"""Handwritten digits in four stages: pretrain on a slice, train, finetune gently, then infer.

The data set is the 8x8 digits that scikit-learn ships (1,797 images, no download). A small MLP
is pretrained on 300 training images, trained on all 1,200 with early stopping, finetuned at a
tenth of the learning rate with gradient clipping, and an ``infer`` stage writes predictions for
the 297 held-out test images to ``LOGDIR/predictions/infer_infer.csv``.

    stagegraph validate examples/digits.py
    stagegraph plan examples/digits.py -o runs/digits/plan.svg
    stagegraph run examples/digits.py --logdir runs/digits

Loaders and the model are factories: ``validate`` and ``plan`` build neither.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime.callbacks import (
    AccuracyCallback,
    CheckpointCallback,
    EarlyStoppingCallback,
    OptimizerCallback,
    PredictionWriter,
)

SEED = 42
BATCH_SIZE = 64
SPLITS = {"pretrain": (0, 300), "train": (0, 1200), "valid": (1200, 1500), "test": (1500, None)}


@functools.lru_cache(maxsize=1)
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Features scaled to [0, 1] and labels, in one fixed shuffled order."""
    from sklearn.datasets import load_digits

    features, targets = load_digits(return_X_y=True)
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(SEED))
    x = torch.as_tensor(features, dtype=torch.float32)[order] / 16.0
    y = torch.as_tensor(targets, dtype=torch.long)[order]
    return x, y


def loader(split: str, shuffle: bool = False) -> DataLoader[Any]:
    x, y = digits()
    start, end = SPLITS[split]
    dataset = TensorDataset(x[start:end], y[start:end])
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=shuffle)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))


def adam(lr: float) -> Any:
    """An optimizer factory: the runtime calls it with the stage's model."""
    return lambda model: torch.optim.Adam(model.parameters(), lr=lr)


class HeldOutAccuracy(sg.Callback):
    """Accuracy on the inference loader, written to ``LOGDIR/test_accuracy.txt`` and printed.

    A user callback: it declares what it reads, so the compiler checks that the model's output
    and the batch's targets exist in the stage it is given to.
    """

    order = sg.CallbackOrder.Metric
    reads = ("output.logits", "batch.targets")

    def on_loader_start(self, runner: Any) -> None:
        self.correct, self.seen = 0, 0

    def on_batch_end(self, runner: Any) -> None:
        predicted = runner.output["logits"].argmax(1)
        self.correct += int((predicted == runner.input["targets"]).sum())
        self.seen += runner.batch_size

    def on_loader_end(self, runner: Any) -> None:
        accuracy = self.correct / max(self.seen, 1)
        print(f"held-out test accuracy: {accuracy:.4f} on {self.seen} images")
        if runner.logdir is not None:
            (runner.logdir / "test_accuracy.txt").write_text(f"{accuracy:.4f}\n")


def build() -> sg.Experiment:
    exp = sg.Experiment("digits", seed=SEED, model=make_model, criterion=nn.CrossEntropyLoss)
    metric = {"main_metric": "accuracy", "minimize_metric": False}
    exp.add_stage(
        "pretrain", num_epochs=3, optimizer=adam(1e-2), **metric,
        loaders={"train": functools.partial(loader, "pretrain", True),
                 "valid": functools.partial(loader, "valid")},
        callbacks={"accuracy": AccuracyCallback(topk=(1, 3))},
    )
    exp.add_stage(
        "train", num_epochs=20, optimizer=adam(3e-3), **metric,
        scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20),
        loaders={"train": functools.partial(loader, "train", True),
                 "valid": functools.partial(loader, "valid")},
        callbacks={"accuracy": AccuracyCallback(topk=(1, 3)),
                   "early_stopping": EarlyStoppingCallback(patience=4, min_delta=1e-3),
                   # Replaces the default checkpoint: keep 3 best, continue from the best.
                   "checkpoint": CheckpointCallback(save_n_best=3, load_best_on_stage_end=True)},
    )
    exp.add_stage(
        "finetune", num_epochs=5, optimizer=adam(3e-4), **metric,
        loaders={"train": functools.partial(loader, "train", True),
                 "valid": functools.partial(loader, "valid")},
        callbacks={"accuracy": AccuracyCallback(topk=(1, 3)),
                   "optimizer": OptimizerCallback(grad_clip_norm=1.0)},
    )
    exp.add_stage(
        "infer",
        loaders={"infer": functools.partial(loader, "test")},
        callbacks={"predictions": PredictionWriter(keys=["logits"], input_keys=["targets"],
                                                   argmax=True, format="csv"),
                   "test_accuracy": HeldOutAccuracy()},
    )
    return exp


experiment = build
