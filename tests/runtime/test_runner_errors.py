"""Exceptions during a run, unavailable devices, and plans the runner refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from trace_helpers import (
    NO_OPTIMIZER,
    Hook,
    Recorder,
    callbacks,
    compile_cpu,
    loaders,
    stand_ins,
    tiny_model,
)

import stagegraph as sg
from stagegraph.runtime import BindingError, DeviceError, PlanError, RunError


def failing_at(epoch: int, loader: str, batch: int, error: BaseException) -> Any:
    @sg.handler(reads=["batch.features"], writes=["output.logits"])
    def step(runner: Any, batch_: Any) -> Any:
        if (runner.epoch, runner.loader_name, runner.loader_batch_step) == (epoch, loader, batch):
            raise error
        return {"logits": runner.model(batch_[0])}

    return step


class Catcher(sg.Callback):
    """Records what ``on_exception`` received; clears the re-raise flag if told to."""

    def __init__(self, seen: list[str], label: str, swallow: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen, self.label, self.swallow = seen, label, swallow

    def on_exception(self, runner: Any) -> None:
        self.seen.append(f"{self.label}: {type(runner.exception).__name__}")
        if self.swallow:
            runner.need_exception_reraise = False


def two_stages(handler: Any, **first: sg.Callback) -> tuple[sg.Experiment, list[str]]:
    log: list[str] = []
    exp = sg.Experiment("errors", model=tiny_model, handler=handler, lints=NO_OPTIMIZER)
    exp.add_stage("a", num_epochs=2, loaders=loaders(),
                  callbacks=callbacks(rec=Recorder(log, scope="experiment"), **first))
    exp.add_stage("b", loaders=loaders(), callbacks=stand_ins())
    return exp, log


def test_error_in_the_handler_says_where_and_keeps_the_cause() -> None:
    boom = ValueError("boom")
    exp, log = two_stages(failing_at(2, "train", 2, boom))
    runner = sg.Runner(compile_cpu(exp))
    with pytest.raises(RunError) as info:
        runner.run()
    assert str(info.value) == ("run failed at stage 'a', epoch 2, loader 'train', batch 2: "
                               "ValueError: boom")
    assert info.value.__cause__ is boom and runner.exception is boom
    assert info.value.where == {"stage": "a", "epoch": 2, "loader": "train", "batch": 2}
    assert log[-2:] == ["batch_start a 2 train 2", "exception a"]
    assert not any(line.endswith(" b") for line in log)  # no later stage starts


def test_error_in_a_callback_names_the_callback_and_event() -> None:
    def bad(runner: Any) -> None:
        if runner.loader_name == "valid":
            raise RuntimeError("broken metric")

    exp, _ = two_stages(sg.SupervisedHandler(), bad=Hook("on_loader_end", bad))
    with pytest.raises(RunError) as info:
        sg.Runner(compile_cpu(exp)).run()
    assert str(info.value) == ("run failed at stage 'a', epoch 1, loader 'valid', "
                               "callback 'bad' (on_loader_end): RuntimeError: broken metric")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_error_in_a_batch_callback_and_at_experiment_level() -> None:
    def bad(runner: Any) -> None:
        raise KeyError("x")

    exp, _ = two_stages(sg.SupervisedHandler(), bad=Hook("on_batch_start", bad))
    with pytest.raises(RunError, match=r"^run failed at stage 'a', epoch 1, loader 'train', "
                       r"batch 1, callback 'bad' \(on_batch_start\): KeyError: 'x'$"):
        sg.Runner(compile_cpu(exp)).run()
    exp, _ = two_stages(sg.SupervisedHandler(), bad=Hook("on_experiment_start", bad))
    with pytest.raises(RunError, match=r"^run failed at callback 'bad' \(on_experiment_start\)"):
        sg.Runner(compile_cpu(exp)).run()


def test_error_in_a_component_factory_is_reported_at_the_stage() -> None:
    seen: list[str] = []

    def broken_optimizer(model: Any) -> Any:
        raise RuntimeError("no such optimizer")

    exp = sg.Experiment("factory", model=tiny_model, lints=NO_OPTIMIZER)
    stage_callbacks = callbacks(catch=Catcher(seen, "catch"), optimizer=sg.Callback())
    exp.add_stage("a", loaders=loaders(), optimizer=broken_optimizer, callbacks=stage_callbacks)
    with pytest.raises(RunError) as info:
        sg.Runner(compile_cpu(exp)).run()
    assert str(info.value).startswith("run failed at stage 'a': BindingError: stage 'a' > "
                                      "optimizer: the factory broken_optimizer failed: "
                                      "RuntimeError: no such optimizer")
    assert isinstance(info.value.__cause__, BindingError)
    assert seen == ["catch: BindingError"]


def test_exception_callbacks_run_in_plan_order_and_can_swallow() -> None:
    seen: list[str] = []
    first = Catcher(seen, "first", order=sg.CallbackOrder.Metric)
    last = Catcher(seen, "last", swallow=True, order=sg.CallbackOrder.External)
    exp, log = two_stages(failing_at(1, "valid", 1, ValueError("late")), z_last=last,
                          a_first=first)
    runner = sg.Runner(compile_cpu(exp)).run()
    assert seen == ["first: ValueError", "last: ValueError"]
    assert isinstance(runner.exception, ValueError) and str(runner.exception) == "late"
    assert log[-3:] == ["loader_start a 1 valid", "batch_start a 1 valid 1", "exception a"]
    assert "stage_end a" not in log and "experiment_end" not in log


def test_keyboard_interrupt_reaches_handlers_and_is_raised_as_itself() -> None:
    seen: list[str] = []
    exp, _ = two_stages(failing_at(1, "train", 1, KeyboardInterrupt()),
                        catch=Catcher(seen, "catch"))
    runner = sg.Runner(compile_cpu(exp))
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert seen == ["catch: KeyboardInterrupt"]
    assert isinstance(runner.exception, KeyboardInterrupt)


def test_keyboard_interrupt_can_be_swallowed() -> None:
    seen: list[str] = []
    exp, _ = two_stages(failing_at(1, "train", 1, KeyboardInterrupt()),
                        catch=Catcher(seen, "catch", swallow=True))
    runner = sg.Runner(compile_cpu(exp)).run()
    assert isinstance(runner.exception, KeyboardInterrupt) and runner.stage_name == "a"


def test_a_failing_exception_handler_is_reported_with_the_original() -> None:
    class Broken(sg.Callback):
        def on_exception(self, runner: Any) -> None:
            raise OSError("disk full")

    exp, _ = two_stages(failing_at(1, "train", 1, ValueError("first")), broken=Broken())
    with pytest.raises(RunError, match=r"callback 'broken' failed in on_exception while "
                       r"handling ValueError: first \(stage 'a', epoch 1, loader 'train', "
                       r"batch 1\)") as info:
        sg.Runner(compile_cpu(exp)).run()
    assert isinstance(info.value.__cause__, OSError)


# --- devices ----------------------------------------------------------------------------------
def one_stage() -> sg.Experiment:
    exp = sg.Experiment("device", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", loaders=loaders(), callbacks=stand_ins())
    return exp


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_unavailable_cuda_fails_before_any_work() -> None:
    built: list[int] = []

    def factory() -> torch.nn.Module:
        built.append(1)
        return tiny_model()

    exp = sg.Experiment("device", model=factory, lints=NO_OPTIMIZER)
    exp.add_stage("a", loaders=loaders(), callbacks=stand_ins())
    for plan, override in ((compile_cpu(exp), "cuda"), (compile_cpu(exp), "cuda:1"),
                           (sg.compile(exp, device="cuda", verbose=False), None)):
        with pytest.raises(DeviceError, match="CUDA is not available on this machine"):
            sg.Runner(plan, device=override)
    assert built == []


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_unavailable_mps_fails() -> None:
    with pytest.raises(DeviceError, match="MPS is not available"):
        sg.Runner(compile_cpu(one_stage()), device="mps")


def test_auto_device_picks_what_is_there() -> None:
    runner = sg.Runner(sg.compile(one_stage(), device="auto", verbose=False))
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert runner.device.type == expected


def test_unknown_device_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match=r"SF108.*'tpu'"):
        sg.Runner(compile_cpu(one_stage()), device="tpu")


# --- plans the runner refuses or recompiles ---------------------------------------------------
def test_plan_with_errors_is_refused_listing_every_error() -> None:
    exp = sg.Experiment("broken", model=tiny_model, lints=NO_OPTIMIZER)
    exp.add_stage("a", loaders={}, callbacks=stand_ins())
    exp.add_stage("b", loaders={"train": []}, callbacks=stand_ins())
    plan = sg.compile(exp, device="cpu", verbose=False)
    with pytest.raises(PlanError) as info:
        sg.Runner(plan)
    text = str(info.value)
    assert text.startswith("the plan for experiment 'broken' has 2 error(s) and cannot run")
    assert "error[SF507] stage 'a'" in text and "error[SF504] stage 'b'" in text
    assert info.value.diagnostics == plan.errors
    with pytest.raises(PlanError):
        sg.run(exp, device="cpu", verbose=False)


def test_plan_from_json_needs_its_experiment() -> None:
    exp = one_stage()
    plan = compile_cpu(exp)
    loaded = sg.ExecutionPlan.model_validate_json(plan.to_json())
    with pytest.raises(PlanError, match=r"read from JSON.*Runner\(plan, experiment=exp\)"):
        sg.Runner(loaded)
    runner = sg.Runner(loaded, experiment=exp).run()
    assert runner.plan.hash == plan.hash and runner.global_epoch == 1
    other = one_stage()
    other.add_stage("more", loaders=loaders(), callbacks=stand_ins())
    with pytest.raises(PlanError, match="does not match experiment 'device'"):
        sg.Runner(loaded, experiment=other)


def test_plan_from_json_compiled_verbose_matches_too() -> None:
    exp = one_stage()
    plan = sg.compile(exp, device="cpu")  # verbose: the console logger is in the plan
    loaded = sg.ExecutionPlan.model_validate_json(plan.to_json())
    assert sg.Runner(loaded, experiment=exp).plan.hash == plan.hash


def test_a_new_logdir_recompiles_the_plan(tmp_path: Path) -> None:
    plan = compile_cpu(one_stage())
    runner = sg.Runner(plan, logdir=tmp_path / "run")
    assert runner.plan.logdir == str(tmp_path / "run") and runner.logdir == tmp_path / "run"
    assert runner.plan.hash != plan.hash
    names = [cb.name for cb in runner.plan.stages[0].callbacks]
    assert "checkpoint" in names and "console" not in names  # verbose=False is kept
    assert sg.Runner(plan).plan is plan  # nothing to change: the same plan runs


def test_runner_wants_a_plan() -> None:
    with pytest.raises(PlanError, match=r"use stagegraph\.run\(exp\)"):
        sg.Runner(one_stage())  # type: ignore[arg-type]
