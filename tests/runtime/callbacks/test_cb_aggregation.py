"""MetricAggregationCallback: batch-size weighted loader means, copied into epoch metrics."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from cb_helpers import make_runner

from stagegraph.runtime.callbacks import MetricAggregationCallback
from stagegraph.runtime.callbacks.aggregation import _all_reduce


def _feed(callback: MetricAggregationCallback, runner, rows) -> None:  # type: ignore[no-untyped-def]
    callback.on_loader_start(runner)
    for size, metrics in rows:
        runner.batch_size, runner.batch_metrics = size, metrics
        callback.on_batch_end(runner)
    callback.on_loader_end(runner)


def test_mean_is_weighted_by_batch_size() -> None:
    runner = make_runner(loader_name="valid")
    callback = MetricAggregationCallback()
    loss = torch.tensor(1.0, requires_grad=True)
    _feed(callback, runner, [(30, {"loss": loss * 1.0, "acc": 0.5}),
                             (10, {"loss": torch.tensor(5.0), "acc": torch.tensor(1.0)})])
    # loss: (30*1 + 10*5) / 40 = 2.0; acc: (30*0.5 + 10*1) / 40 = 0.625
    assert runner.loader_metrics == {"loss": pytest.approx(2.0), "acc": pytest.approx(0.625)}
    assert runner.epoch_metrics == {"valid_loss": pytest.approx(2.0),
                                    "valid_acc": pytest.approx(0.625)}
    assert all(type(v) is float for v in runner.loader_metrics.values())


def test_a_metric_missing_from_some_batches_averages_over_its_own_samples() -> None:
    runner = make_runner()
    callback = MetricAggregationCallback()
    _feed(callback, runner, [(2, {"loss": 1.0, "rare": 4.0}), (6, {"loss": 3.0})])
    assert runner.loader_metrics == {"loss": 2.5, "rare": 4.0}


def test_a_loader_level_value_wins_over_the_batch_mean() -> None:
    runner = make_runner(loader_name="train")
    callback = MetricAggregationCallback()
    callback.on_loader_start(runner)
    runner.batch_size, runner.batch_metrics = 4, {"auc": 0.1}
    callback.on_batch_end(runner)
    runner.loader_metrics["auc"] = 0.9  # set by a metric callback at loader end
    callback.on_loader_end(runner)
    assert runner.epoch_metrics == {"train_auc": 0.9}


def test_loaders_accumulate_separately_and_epoch_keys_are_prefixed() -> None:
    runner = make_runner()
    callback = MetricAggregationCallback()
    for name, value in (("train", 1.0), ("valid", 2.0)):
        runner.loader_name, runner.loader_metrics = name, {}
        _feed(callback, runner, [(3, {"loss": value})])
    assert runner.epoch_metrics == {"train_loss": 1.0, "valid_loss": 2.0}


def test_running_mean_so_far() -> None:
    runner = make_runner()
    callback = MetricAggregationCallback()
    callback.on_loader_start(runner)
    assert callback.running("loss") is None
    for size, value in ((1, 1.0), (3, 3.0)):
        runner.batch_size, runner.batch_metrics = size, {"loss": torch.tensor(value)}
        callback.on_batch_end(runner)
    assert callback.running("loss") == pytest.approx(2.5)


def test_a_non_scalar_batch_metric_is_refused_with_its_name() -> None:
    runner = make_runner(batch_size=2, batch_metrics={"per_class": torch.ones(3)})
    callback = MetricAggregationCallback()
    callback.on_loader_start(runner)
    with pytest.raises(ValueError, match="'per_class'"):
        callback.on_batch_end(runner)


def test_all_reduce_of_sums_in_a_one_process_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        sums = {"b": [6.0, 3], "a": [torch.tensor(2.0), 1]}
        _all_reduce(sums, torch.device("cpu"))
        assert sums == {"a": [2.0, 1.0], "b": [6.0, 3.0]}
    finally:
        dist.destroy_process_group()


def test_sums_are_those_of_reading_each_value_as_its_batch_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Values stay on the device until loader end; the sums are the same to the bit."""
    monkeypatch.setattr("stagegraph.runtime.callbacks.aggregation._Pending.CHUNK", 3)
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(11, generator=gen) * 10
    sizes = [7, 5, 3, 8, 1, 7, 7, 2, 9, 4, 6]
    rows = []
    for i, (value, size) in enumerate(zip(values, sizes, strict=True)):
        dtype = torch.float64 if i % 3 else torch.float32
        acc = value.reshape(1) if i % 4 == 0 else value.to(dtype)
        number = value.item() if i == 6 else torch.tensor(i % 2 == 0)  # a number between tensors
        rows.append((size, {"loss": acc, "flag": number}))
    runner = make_runner(loader_name="train")
    callback = MetricAggregationCallback()
    _feed(callback, runner, rows)
    expected: dict[str, list[float]] = {}
    for size, metrics in rows:  # the previous way: one .item() per value, summed as it comes
        for key, value in metrics.items():
            v = value.item() if isinstance(value, torch.Tensor) else value
            acc = expected.setdefault(key, [0.0, 0])
            acc[0], acc[1] = (v * size, size) if acc[1] == 0 else (acc[0] + v * size, acc[1] + size)
    assert runner.loader_metrics == {k: total / count for k, (total, count) in expected.items()}


def test_a_mid_loader_state_holds_the_sums_as_numbers() -> None:
    runner = make_runner(loader_name="train")
    callback = MetricAggregationCallback()
    callback.on_loader_start(runner)
    runner.batch_size, runner.batch_metrics = 2, {"loss": torch.tensor(1.5)}
    callback.on_batch_end(runner)
    state = callback.loader_state_dict()
    assert state == {"sums": {"loss": [3.0, 2]}} and type(state["sums"]["loss"][0]) is float
    restored = MetricAggregationCallback()
    restored.load_loader_state_dict(state)
    runner.batch_size, runner.batch_metrics = 2, {"loss": torch.tensor(0.5)}
    restored.on_batch_end(runner)
    restored.on_loader_end(runner)
    assert runner.loader_metrics == {"loss": 1.0}
