"""`explain`: the chain of hard edges, or why two callbacks are unordered."""

from __future__ import annotations

from conftest import LOADERS, Metric, Plain, experiment

import stagegraph as sg


def plan() -> sg.ExecutionPlan:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "acc": Metric(),
        "report": Plain(order=0, reads=["valid.metrics"]),
    })
    return sg.compile(exp, verbose=False)


def test_chain_through_dataflow() -> None:
    answer = plan().explain("train", "criterion", "validation")
    assert answer.relation == "before"
    assert str(answer) == "\n".join([
        "in stage 'train', 'criterion' runs before 'validation':",
        "  criterion -> metric_aggregation: 'criterion' writes 'metric.loss', which "
        "'metric_aggregation' reads as 'metric.*' (dataflow)",
        "  metric_aggregation -> validation: 'metric_aggregation' writes "
        "'epoch_metric.train_accuracy' and 3 more 'epoch_metric' keys, which 'validation' reads "
        "as 'epoch_metric.*' (dataflow)",
    ])


def test_reverse_order_and_inversion_note() -> None:
    answer = plan().explain("train", "report", "validation")
    assert answer.relation == "after"
    text = str(answer)
    assert text.startswith("in stage 'train', 'validation' runs before 'report':")
    assert "[overrides order buckets: Validation (80) before Internal (0)]" in text


def test_unordered_and_unknown() -> None:
    answer = plan().explain("train", "acc", "criterion")
    assert answer.relation == "unordered"
    assert "same order bucket Metric (20)" in str(answer)
    missing = plan().explain("train", "acc", "nope")
    assert missing.relation == "unknown"
    assert "has no callback 'nope'" in str(missing)
    assert plan().explain("nowhere", "a", "b").relation == "unknown"
