"""Components, precision, batches on the device, callback binding and reproducibility."""

from __future__ import annotations

import functools
import random
from collections import namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from trace_helpers import (
    NO_OPTIMIZER,
    Hook,
    Recorder,
    callbacks,
    compile_cpu,
    loader,
    loaders,
    run_cpu,
    stand_ins,
    tiny_model,
)

import stagegraph as sg
from stagegraph.compiler.plan import CallbackPlan
from stagegraph.runtime import BindingError, bind, set_global_seed
from stagegraph.runtime.device import batch_mover, batch_size


def no_defaults(**named: sg.Callback) -> dict[str, sg.Callback]:
    """Stand-ins named like the criterion, optimizer and scheduler defaults, which they replace."""
    return callbacks(**named, criterion=sg.Callback(), optimizer=sg.Callback(),
                     scheduler=sg.Callback())


def snapshot(into: list[dict[str, Any]]) -> Hook:
    return Hook("on_stage_start", lambda r: into.append({
        "model": r.model, "criterion": r.criterion, "optimizer": r.optimizer,
        "scheduler": r.scheduler, "loaders": dict(r.loaders)}), scope="experiment")


class PlainLoss:
    """A criterion that is neither a module nor a factory: a callable of predictions."""

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets)


def test_factories_get_what_they_may_take() -> None:
    seen: list[dict[str, Any]] = []
    made: list[str] = []

    def make_train_loader() -> Any:
        made.append("train")
        return loader(4)

    exp = sg.Experiment("factories", model=tiny_model, criterion=nn.CrossEntropyLoss,
                        optimizer=lambda model: torch.optim.SGD(model.parameters(), lr=0.1),
                        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1))
    exp.add_stage("a", loaders={"train": make_train_loader, "valid": loader(2)},
                  callbacks=no_defaults(snap=snapshot(seen)))
    exp.add_stage("b", loaders={"train": make_train_loader, "valid": loader(2)},
                  criterion=PlainLoss(), callbacks=no_defaults(),
                  optimizer=functools.partial(torch.optim.Adam, lr=0.01))
    run_cpu(exp)
    a, b = seen
    assert isinstance(a["criterion"], nn.CrossEntropyLoss)
    assert isinstance(b["criterion"], PlainLoss)  # it takes predictions: it is the criterion
    assert isinstance(a["optimizer"], torch.optim.SGD)
    assert isinstance(b["optimizer"], torch.optim.Adam)
    for stage in (a, b):
        params = stage["optimizer"].param_groups[0]["params"]
        assert [id(p) for p in params] == [id(p) for p in stage["model"].parameters()]
        assert stage["scheduler"].optimizer is stage["optimizer"]
    assert made == ["train", "train"] and a["loaders"]["train"] is not b["loaders"]["train"]


def test_objects_are_used_as_they_are_across_stages() -> None:
    seen: list[dict[str, Any]] = []
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.MSELoss()
    valid = loader(2)
    exp = sg.Experiment("objects", model=model, criterion=criterion, optimizer=optimizer)
    exp.add_stage("a", loaders={"train": loader(2), "valid": valid},
                  callbacks=no_defaults(snap=snapshot(seen)))
    exp.add_stage("b", loaders={"train": loader(2), "valid": valid}, callbacks=no_defaults())
    run_cpu(exp)
    for stage in seen:
        assert (stage["model"], stage["optimizer"], stage["criterion"]) == (
            model, optimizer, criterion)
        assert stage["loaders"]["valid"] is valid
    assert seen[0]["scheduler"] is None


@sg.handler(reads=["batch.features", "batch.targets"], writes=["output.logits", "metric.loss"])
def sgd_step(runner: Any, batch: Any) -> Any:
    """A supervised step with its own SGD update, so these tests need no built-in callback."""
    features, targets = batch
    logits = runner.model(features)
    loss = F.cross_entropy(logits, targets)
    runner.batch_metrics["loss"] = loss.detach()
    if runner.is_train_loader:
        runner.model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for param in runner.model.parameters():
                param -= 0.1 * param.grad
    return {"logits": logits}


def dropout_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2))


def trained_weights(seed: int) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    starts: list[dict[str, torch.Tensor]] = []
    exp = sg.Experiment("repro", seed=seed, model=dropout_model, handler=sgd_step)
    data = {"train": loader(16, 4, shuffle=True), "valid": loader(4)}
    keep = Hook("on_stage_start", lambda r: starts.append(
        {k: v.clone() for k, v in r.model.state_dict().items()}), scope="experiment")
    exp.add_stage("a", num_epochs=2, loaders=data, callbacks=callbacks(keep=keep))
    exp.add_stage("b", num_epochs=2, loaders=data, callbacks=stand_ins())
    runner = run_cpu(exp)
    return {k: v.clone() for k, v in runner.model.state_dict().items()}, starts


def test_same_experiment_twice_gives_bitwise_equal_weights() -> None:
    first, starts = trained_weights(seed=5)
    second, _ = trained_weights(seed=5)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other, _ = trained_weights(seed=6)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    # the model carried over: stage 'b' started from where training had moved it in stage 'a'
    assert not all(torch.equal(starts[0][k], starts[1][k]) for k in first)
    assert not all(torch.equal(starts[1][k], first[k]) for k in first)


@pytest.mark.parametrize(("precision", "dtype"), [
    ("fp32", torch.float32), ("bf16", torch.bfloat16), ("amp", torch.bfloat16)])
def test_precision_autocasts_the_handler_on_cpu(precision: str, dtype: torch.dtype) -> None:
    seen: list[tuple[Any, Any, str]] = []
    record = Hook("on_batch_end", lambda r: seen.append(
        (r.output["logits"].dtype, r.scaler, r.precision)))
    exp = sg.Experiment("precision", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", precision=precision, loaders=loaders(train=2, valid=2),
                  callbacks=callbacks(record=record))
    run_cpu(exp)
    assert seen == [(dtype, None, precision)] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda_has_a_scaler() -> None:  # pragma: no cover - CPU CI
    seen: list[Any] = []
    exp = sg.Experiment("amp", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", precision="amp", loaders=loaders(train=2, valid=2), callbacks=callbacks(
        record=Hook("on_batch_end", lambda r: seen.append((r.output["logits"].dtype, r.scaler)))))
    sg.Runner(sg.compile(exp, device="cuda", verbose=False)).run()
    assert seen[0][0] is torch.float16 and isinstance(seen[0][1], torch.amp.GradScaler)


Pair = namedtuple("Pair", ["left", "right"])


def test_batches_keep_their_structure_on_the_device() -> None:
    move = batch_mover(torch.device("cpu"))
    t = torch.ones(3, 2)
    batch = {"x": [t, (t, "label")], "pair": Pair(t, 1), "n": 4}
    moved = move(batch)
    assert moved.keys() == batch.keys() and type(moved["x"]) is list
    assert type(moved["x"][1]) is tuple and moved["x"][1][1] == "label"
    assert type(moved["pair"]) is Pair and moved["pair"].right == 1
    assert torch.equal(moved["x"][0], t) and moved["n"] == 4
    assert batch_size(batch | {"x": t}) == 3
    assert batch_size({"y": t[:2], "x": t}) == 2
    assert batch_size([t[:1], t]) == 1


def test_dict_batches_with_a_custom_handler() -> None:
    sizes: list[int] = []

    class Dicts(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"features": torch.full((3,), float(i)), "targets": torch.tensor(i % 2)}

    data = torch.utils.data.DataLoader(Dicts(), batch_size=2)
    exp = sg.Experiment("dicts", model=tiny_model, handler=sg.SupervisedHandler(),
                        lints=NO_OPTIMIZER)
    exp.add_stage("a", loaders={"train": data, "valid": data}, callbacks=callbacks(
        size=Hook("on_batch_end", lambda r: sizes.append(r.batch_size))))
    runner = run_cpu(exp)
    assert sizes == [2, 2, 1, 2, 2, 1] and runner.global_sample_step == 10


def test_defaults_are_built_fresh_for_each_stage_from_their_target() -> None:
    exp = sg.Experiment("bind", model=tiny_model, lints=NO_OPTIMIZER)
    shared = Recorder(scope="experiment")
    exp.add_stage("a", loaders=loaders(), callbacks=callbacks(shared=shared))
    exp.add_stage("b", loaders=loaders(), callbacks=stand_ins())
    plan = compile_cpu(exp)
    extra = CallbackPlan(name="made", type="trace_helpers.Recorder", order=0, node="all",
                         scope="stage", origin="default", declared_in="a",
                         target="trace_helpers:Recorder", events=("on_epoch_end",))
    stages = tuple(s.model_copy(update={
        "callbacks": (*s.callbacks, extra.model_copy(update={"declared_in": s.name})),
        "dispatch": {**s.dispatch, "on_epoch_end": (*s.dispatch.get("on_epoch_end", ()),
                                                    "made")}}) for s in plan.stages)
    a, b = bind(plan.model_copy(update={"stages": stages}), exp)
    assert a.callbacks["shared"] is b.callbacks["shared"] is shared
    assert isinstance(a.callbacks["made"], Recorder) and a.callbacks["made"] is not b.callbacks[
        "made"]
    hooks = a.table("on_epoch_end")
    assert [a.name_of(h) for h in hooks] == ["shared", "made"]
    assert hooks[1].__self__ is a.callbacks["made"]  # type: ignore[attr-defined]
    broken = extra.model_copy(update={"target": "no_such_module:Thing"})
    bad = stages[0].model_copy(update={"callbacks": (broken,), "dispatch": {}})
    with pytest.raises(BindingError, match=r"stage 'a' > callback 'made': cannot import "
                       r"'no_such_module'"):
        bind(plan.model_copy(update={"stages": (bad,)}), exp)


def test_set_global_seed_seeds_every_generator() -> None:
    draws = []
    for _ in range(2):
        set_global_seed(11)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert draws[0] == draws[1]


def test_built_in_defaults_bind_fresh_per_stage_and_run() -> None:
    instances: list[dict[str, Any]] = []
    exp = sg.Experiment("defaults", model=tiny_model, criterion=nn.CrossEntropyLoss,
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    keep = Hook("on_stage_end", lambda r: instances.append(dict(r.callbacks)), scope="experiment")
    exp.add_stage("a", loaders=loaders(), callbacks={"keep": keep})
    exp.add_stage("b", loaders=loaders())
    runner = run_cpu(exp)
    a, b = instances
    for name in ("criterion", "optimizer", "metric_aggregation", "validation"):
        assert type(a[name]) is type(b[name]) and a[name] is not b[name]
        assert runner.stage is not None and runner.stage.callback(name).origin == "default"
    assert a["keep"] is b["keep"] is keep
    assert {"train_loss", "valid_loss"} <= runner.epoch_metrics.keys()


@pytest.mark.parametrize("optimizer_at", ["experiment", "stage"])
def test_an_infer_stage_builds_no_experiment_optimizer_or_scheduler(optimizer_at: str) -> None:
    """A real run: train, then infer; the experiment's scheduler never reaches the infer stage.

    With the optimizer on the train stage only, building the scheduler in 'infer' used to fail
    (its factory got no optimizer) after all the training.
    """
    seen: dict[str, tuple[Any, Any]] = {}
    adam = {"optimizer": lambda m: torch.optim.Adam(m.parameters(), lr=0.01)}
    exp = sg.Experiment("infer", model=tiny_model, criterion=nn.CrossEntropyLoss,
                        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1),
                        **(adam if optimizer_at == "experiment" else {}))
    keep = Hook("on_stage_end", lambda r: seen.update({r.stage_name: (r.optimizer, r.scheduler)}),
                scope="experiment")
    exp.add_stage("train", num_epochs=2, loaders=loaders(), callbacks={"keep": keep},
                  **(adam if optimizer_at == "stage" else {}))
    exp.add_stage("infer", loaders={"infer": loader(4)})
    plan = compile_cpu(exp)
    assert set(plan.stage("infer").components) == {"model", "criterion"}
    run_cpu(exp)
    optimizer, scheduler = seen["train"]
    assert isinstance(optimizer, torch.optim.Adam) and scheduler.optimizer is optimizer
    assert seen["infer"] == (None, None)


def test_an_infer_stage_builds_its_own_optimizer() -> None:
    """A stage's own optimizer is built even in an inference stage: the user asked for it."""
    seen: list[Any] = []
    exp = sg.Experiment("own", model=tiny_model)
    exp.add_stage("infer", loaders={"infer": loader(2)},
                  optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                  callbacks={"keep": Hook("on_stage_start", lambda r: seen.append(r.optimizer))})
    run_cpu(exp)
    assert isinstance(seen[0], torch.optim.SGD)
