"""Faults during a run: NaN and infinite losses, NaN valid metrics, and errors explained."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import stagegraph as sg
from stagegraph.runtime import RunError
from stagegraph.runtime.callbacks import AccuracyCallback, OptimizerCallback
from stagegraph.runtime.errors import NonFiniteLossError, StagegraphWarning
from stagegraph.runtime.resume import ResumeStore


def batches(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [{"features": torch.randn(4, 3, generator=generator),
             "targets": torch.randint(0, 2, (4,), generator=generator)} for _ in range(n)]


def poisoned(at: set[tuple[int, str, int]], value: float = math.nan) -> Any:
    """A batch step whose output is ``value`` at these (epoch, loader, batch) positions."""

    @sg.handler(reads=["batch.features", "batch.targets"], writes=["output.logits"])
    def step(runner: Any, batch: Any) -> Any:
        logits = runner.model(batch["features"])
        if (runner.epoch, runner.loader_name, runner.loader_batch_step) in at:
            # NaN everywhere, or the target's logit at -inf (an infinite cross-entropy)
            logits = (logits * value if math.isnan(value) else
                      logits.masked_fill(nn.functional.one_hot(batch["targets"], 2).bool(),
                                         -value))
        return {"logits": logits}

    return step


def experiment(handler: Any, epochs: int = 3, **callbacks: sg.Callback) -> sg.Experiment:
    exp = sg.Experiment("faults", seed=0, model=lambda: nn.Linear(3, 2),
                        criterion=nn.CrossEntropyLoss, handler=handler,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    exp.add_stage("train", num_epochs=epochs, callbacks=callbacks,
                  loaders={"train": batches(3, 1), "valid": batches(2, 2)})
    return exp


def runner(exp: sg.Experiment, logdir: Path | None = None) -> Any:
    return sg.Runner(sg.compile(exp, device="cpu", verbose=False,
                                logdir=None if logdir is None else str(logdir)))


# --- non-finite losses ------------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_loss_stops_the_run_saying_where(tmp_path: Path, value: float) -> None:
    run = runner(experiment(poisoned({(2, "train", 2)}, value)), tmp_path)
    with pytest.raises(RunError) as info:
        run.run()
    # Checked at loader end (no host read per batch), naming the first non-finite batch.
    assert str(info.value).startswith(
        "run failed at stage 'train', epoch 2, loader 'train', callback 'optimizer' "
        f"(on_loader_end): NonFiniteLossError: the loss 'loss' was {value} at batch 2 of this "
        "loader, so the run stops at its end, before any checkpoint; the last checkpoint is "
        "untouched; lower the learning rate")
    assert isinstance(info.value.__cause__, NonFiniteLossError)
    store = ResumeStore.of_logdir(tmp_path)
    assert [n for n, _ in store.files()] == [1]  # the last good one; none of the failed epoch
    assert (tmp_path / "checkpoints" / "train.exception.pth").exists()
    best = torch.load(tmp_path / "checkpoints" / "train.best.pth", weights_only=True)
    assert best["counters"]["epoch"] == 1


def test_stop_is_checked_before_a_mid_epoch_checkpoint(tmp_path: Path) -> None:
    """The losses are checked at loader end, and before any checkpoint saves the weights."""
    gen = torch.Generator().manual_seed(1)
    samples = [{"features": torch.randn(3, generator=gen), "targets": torch.tensor(i % 2)}
               for i in range(16)]
    exp = sg.Experiment("faults", seed=0, model=lambda: nn.Linear(3, 2),
                        criterion=nn.CrossEntropyLoss, handler=poisoned({(1, "train", 2)}),
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    exp.add_stage("train", num_epochs=1, loaders={
        "train": torch.utils.data.DataLoader(samples, batch_size=4),
        "valid": torch.utils.data.DataLoader(samples, batch_size=8)})
    run = sg.Runner(sg.compile(exp, device="cpu", verbose=False, logdir=str(tmp_path)),
                    checkpoint_every=2)
    with pytest.raises(RunError) as info:
        run.run()
    assert isinstance(info.value.__cause__, NonFiniteLossError)
    assert "the loss 'loss' was nan at batch 2 of this loader" in str(info.value)
    assert ResumeStore.of_logdir(tmp_path).files() == []  # nothing saved from the NaN step


def test_skip_leaves_the_batch_out_and_warns_with_the_count() -> None:
    handler = poisoned({(1, "train", 2), (1, "train", 3), (2, "train", 1)})
    exp = experiment(handler, epochs=2, optimizer=OptimizerCallback(nonfinite="skip"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = runner(exp).run()
    messages = [str(w.message) for w in seen if issubclass(w.category, StagegraphWarning)]
    assert messages == [
        "stage 'train', epoch 1, loader 'train': skipped 2 step(s) whose loss 'loss' was NaN or "
        "infinite (batches 2, 3)",
        "stage 'train', epoch 2, loader 'train': skipped 1 step(s) whose loss 'loss' was NaN or "
        "infinite (batches 1)"]
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert math.isnan(run.epoch_metrics["train_loss"])  # reported as it was, not hidden


def test_ignore_checks_nothing() -> None:
    exp = experiment(poisoned({(1, "train", 1)}), epochs=1,
                     optimizer=OptimizerCallback(nonfinite="ignore"))
    run = runner(exp).run()
    assert not all(torch.isfinite(p).all() for p in run.model.parameters())


def test_nonfinite_option_is_checked() -> None:
    with pytest.raises(ValueError, match=r"nonfinite must be one of \('stop', 'skip', 'ignore'\)"):
        OptimizerCallback(nonfinite="retry")


def test_a_nan_valid_metric_is_never_the_best(tmp_path: Path) -> None:
    handler = poisoned({(1, "valid", 1), (3, "valid", 2)})
    exp = experiment(handler, epochs=3, optimizer=OptimizerCallback(nonfinite="skip"))
    run = runner(exp, tmp_path).run()
    assert run.best_valid_metrics and math.isfinite(run.best_valid_metrics["loss"])
    best = torch.load(tmp_path / "checkpoints" / "train.best.pth", weights_only=True)
    assert best["counters"]["epoch"] == 2 and math.isfinite(best["valid_metrics"]["loss"])
    top = torch.load(tmp_path / "checkpoints" / "train.last.pth", weights_only=True)
    assert [epoch for _, epoch, _ in top["callbacks"]["checkpoint"]["top"]] == [2]


# --- errors explained -------------------------------------------------------------------------
class Reads(sg.Callback):
    """Reads ``runner.output[key]`` or ``runner.input[key]`` in on_batch_end."""

    def __init__(self, where: str, key: str, declare: bool = True) -> None:
        namespace = "output" if where == "output" else "batch"
        super().__init__(reads=(f"{namespace}.{key}",) if declare else ())
        self.where, self.key = where, key

    def on_batch_end(self, runner: Any) -> None:
        (runner.output if self.where == "output" else runner.input)[self.key]


def failure(exp: sg.Experiment) -> str:
    with pytest.raises(RunError) as info:
        runner(exp).run()
    return str(info.value)


def undeclared(runner: Any, batch: Any) -> Any:  # writes undeclared: the compiler cannot check
    return {"logits": runner.model(batch["features"])}


def test_a_missing_output_key_names_the_callback_and_the_keys_there_are() -> None:
    text = failure(experiment(undeclared, reader=Reads("output", "probs")))
    assert text == (
        "run failed at stage 'train', epoch 1, loader 'train', batch 1, callback 'reader' "
        "(on_batch_end): KeyError: 'probs': callback 'reader' reads output key 'probs', but the "
        "batch handler's output has the keys ['logits']; make the handler write 'probs', or "
        "point the callback at one of those keys")


def test_a_missing_batch_key() -> None:
    text = failure(experiment(undeclared, reader=Reads("batch", "mask")))
    assert "KeyError: 'mask': callback 'reader' reads batch key 'mask', but loader 'train' " \
           "yields batches with the keys ['features', 'targets']" in text
    text = failure(experiment(undeclared, reader=Reads("batch", "mask", declare=False)))
    assert "reads key 'mask', which none of the batch metrics (keys ['loss']), the batch " \
           "handler's output (keys ['logits']) and the batch (keys ['features', 'targets']) " \
           "has" in text


def test_the_handler_reading_a_missing_batch_key() -> None:
    exp = experiment(sg.SupervisedHandler(input_key="x"))
    text = failure(exp)
    assert text.startswith("run failed at stage 'train', epoch 1, loader 'train', batch 1: "
                           "KeyError: 'x': the batch handler reads batch key 'x', but loader "
                           "'train' yields batches with the keys ['features', 'targets']")


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")  # tensor["logits"]
def test_a_handler_returning_a_tensor() -> None:
    @sg.handler(reads=["batch.features"])
    def bare(runner: Any, batch: Any) -> Any:
        return runner.model(batch["features"])

    text = failure(experiment(bare, reader=Reads("output", "logits")))
    assert text.endswith("callback 'reader' reads output key(s) ['logits'], but the batch "
                         "handler returned Tensor, not a dict; return a dict such as "
                         "{'logits': ...} from the handler")


@pytest.mark.parametrize(("batch", "described"), [
    (7, "a value of type int"), ({}, "an empty dict"), ((), "an empty tuple"),
    ({"features": None}, "a dict whose first value is NoneType"),
    ([3.5, 1.0], "a list whose first item is float"),
])
def test_unsupported_batches_say_what_a_batch_is(batch: Any, described: str) -> None:
    exp = sg.Experiment("batches", model=lambda: nn.Linear(3, 2), criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    exp.add_stage("train", loaders={"train": [batch], "valid": [batch]})
    text = failure(exp)
    assert text == (
        "run failed at stage 'train', epoch 1, loader 'train', batch 1: BatchError: the loader "
        f"yielded {described}, which has no batch size; a batch is a dict whose first value is "
        "a tensor, or a tuple or list whose first item is a tensor (as a DataLoader over a "
        "TensorDataset yields); make the loader yield one of those")


def test_a_loader_that_is_not_iterable() -> None:
    exp = sg.Experiment("loader", model=lambda: nn.Linear(3, 2), criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    exp.add_stage("train", loaders={"train": 3.5, "valid": []})
    assert failure(exp) == (
        "run failed at stage 'train', epoch 1, loader 'train': loader 'train' is float, which is "
        "not iterable; a loader is a DataLoader or any iterable of batches, or a function "
        "returning one")


class ReadsLate(sg.Callback):
    """Reads ``runner.<where>[key]`` with a key the compiler cannot see; declares nothing."""

    def __init__(self, where: str, key: str, event: str = "on_batch_end", **kw: Any) -> None:
        super().__init__(**kw)
        self.where, self.key = where, key
        setattr(self, event, self.read)

    def read(self, runner: Any) -> None:
        getattr(runner, self.where)[self.key]


class WritesProbs(sg.Callback):
    order = sg.CallbackOrder.Metric
    writes = ("output.probs",)

    def on_batch_end(self, runner: Any) -> None:
        runner.output["probs"] = runner.output["logits"].softmax(1)


def test_a_batch_metric_read_before_its_writer_runs_names_the_writer_and_the_fix() -> None:
    reader = ReadsLate("batch_metrics", "accuracy", order=sg.CallbackOrder.Internal)
    text = failure(experiment(sg.SupervisedHandler(), reader=reader,
                              accuracy=AccuracyCallback()))
    assert text == (
        "run failed at stage 'train', epoch 1, loader 'train', batch 1, callback 'reader' "
        "(on_batch_end): KeyError: 'accuracy': callback 'reader' reads batch metric 'accuracy', "
        "which callback 'accuracy' writes in stage 'train', but it runs after 'reader'; declare "
        "reads=['metric.accuracy'] on 'reader' so the compiler orders it after its writer, or "
        "fix the order (after=['accuracy'] on 'reader')")


def test_an_output_key_a_later_callback_writes() -> None:
    reader = ReadsLate("output", "probs", order=sg.CallbackOrder.Internal)
    text = failure(experiment(sg.SupervisedHandler(), reader=reader, probs=WritesProbs()))
    assert "KeyError: 'probs': callback 'reader' reads output key 'probs', which callback " \
           "'probs' writes in stage 'train', but it runs after 'reader'; declare " \
           "reads=['output.probs'] on 'reader'" in text


def test_a_batch_metric_read_in_an_event_before_the_one_that_writes_it() -> None:
    reader = ReadsLate("batch_metrics", "accuracy", event="on_batch_start")
    text = failure(experiment(sg.SupervisedHandler(), accuracy=AccuracyCallback(),
                              reader=reader))
    assert text.endswith(
        "callback 'reader' (on_batch_start): KeyError: 'accuracy': callback 'reader' reads "
        "batch metric 'accuracy', which callback 'accuracy' writes in stage 'train' (in "
        "on_batch_end), but had not written yet when 'reader' read it in on_batch_start on "
        "loader 'train'; read it in a later event, or make the writer write it for every batch "
        "of this loader")


def test_a_batch_metric_nothing_writes_keeps_the_plain_message() -> None:
    reader = ReadsLate("batch_metrics", "accuracy")
    text = failure(experiment(sg.SupervisedHandler(), reader=reader))
    assert "which none of the batch metrics" in text and "writes in stage" not in text


def test_a_mistyped_batch_metric_is_suggested() -> None:
    reader = ReadsLate("batch_metrics", "los")
    text = failure(experiment(sg.SupervisedHandler(), reader=reader))
    assert "none of the batch metrics (keys ['loss'])" in text and "Did you mean 'loss'?" in text
