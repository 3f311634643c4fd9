"""AccuracyCallback (top-1, top-k, binary) and the torchmetrics adapter."""

from __future__ import annotations

import sys

import pytest
import torch
from cb_helpers import make_runner

from stagegraph.runtime.callbacks import AccuracyCallback, TorchMetricsCallback, topk_names

# 4 samples, 4 classes; the target's rank among the scores is 1, 2, 3 and 4.
SCORES = torch.tensor([[0.9, 0.05, 0.03, 0.02],
                       [0.5, 0.4, 0.05, 0.05],
                       [0.1, 0.2, 0.3, 0.4],
                       [0.4, 0.3, 0.2, 0.1]])
TARGETS = torch.tensor([0, 1, 1, 3])


def _run(callback: AccuracyCallback, scores: torch.Tensor, targets: torch.Tensor) -> dict:
    runner = make_runner(output={"logits": scores}, input={"targets": targets})
    callback.on_batch_end(runner)
    return runner.batch_metrics


def test_top1_accuracy_is_the_share_of_argmax_hits() -> None:
    metrics = _run(AccuracyCallback(), SCORES, TARGETS)
    assert list(metrics) == ["accuracy"]
    assert metrics["accuracy"].item() == pytest.approx(0.25)
    assert metrics["accuracy"].ndim == 0 and not metrics["accuracy"].requires_grad


def test_topk_accuracy_against_hand_computed_values() -> None:
    metrics = _run(AccuracyCallback(topk=(1, 2, 3)), SCORES, TARGETS)
    assert {k: round(v.item(), 4) for k, v in metrics.items()} == {
        "accuracy": 0.25, "accuracy02": 0.5, "accuracy03": 0.75}


def test_k_larger_than_the_classes_counts_every_sample() -> None:
    metrics = _run(AccuracyCallback(topk=(1, 10)), SCORES, TARGETS)
    assert metrics["accuracy10"].item() == 1.0


def test_one_hot_and_column_targets() -> None:
    one_hot = torch.nn.functional.one_hot(TARGETS, 4).float()
    assert _run(AccuracyCallback(), SCORES, one_hot)["accuracy"].item() == pytest.approx(0.25)
    column = _run(AccuracyCallback(topk=(1, 2)), SCORES, TARGETS[:, None])
    assert column["accuracy"].item() == pytest.approx(0.25)
    assert column["accuracy02"].item() == pytest.approx(0.5)


def test_binary_scores_use_the_threshold() -> None:
    scores = torch.tensor([2.0, -1.0, 0.5, -0.1])
    targets = torch.tensor([1, 0, 0, 1])
    assert _run(AccuracyCallback(), scores, targets)["accuracy"].item() == 0.5
    assert _run(AccuracyCallback(), scores[:, None], targets)["accuracy"].item() == 0.5


def test_names_and_declarations() -> None:
    assert topk_names("acc", (1, 5)) == ("acc", "acc05")
    cb = AccuracyCallback(input_key="scores", target_key="y", topk=(3, 1))
    assert cb.reads == ("output.scores", "batch.y")
    assert cb.writes == ("metric.accuracy", "metric.accuracy03")
    with pytest.raises(ValueError, match="topk"):
        AccuracyCallback(topk=(0,))


def test_torchmetrics_missing_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    with pytest.raises(ImportError, match=r"pip install 'stagegraph\[metrics\]'"):
        TorchMetricsCallback(object())


def test_torchmetrics_adapter_batch_and_loader_values() -> None:
    torchmetrics = pytest.importorskip("torchmetrics")
    metric = torchmetrics.classification.MulticlassAccuracy(num_classes=4, average="micro")
    callback = TorchMetricsCallback(metric)
    assert callback.metric_key == "multiclass_accuracy"
    assert callback.writes == ("metric.multiclass_accuracy", "loader_metric.multiclass_accuracy")
    runner = make_runner()
    callback.on_loader_start(runner)
    for rows in (slice(0, 2), slice(2, 4)):
        runner.batch_metrics = {}
        runner.output, runner.input = {"logits": SCORES[rows]}, {"targets": TARGETS[rows]}
        callback.on_batch_end(runner)
        assert runner.batch_metrics["multiclass_accuracy"].ndim == 0
    callback.on_loader_end(runner)
    assert runner.loader_metrics == {"multiclass_accuracy": pytest.approx(0.25)}


def test_torchmetrics_adapter_refuses_other_objects() -> None:
    pytest.importorskip("torchmetrics")
    with pytest.raises(TypeError, match=r"torchmetrics\.Metric"):
        TorchMetricsCallback(object())
