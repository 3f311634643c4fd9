"""Compiled steps (``compile=``): same losses as eager, compiled once per stage, plain checkpoints,
resume, recompilations reported, and what happens where torch.compile cannot compile.

The backends are ``aot_eager`` (dynamo and AOTAutograd, the whole machinery but code
generation) and ``eager``: inductor needs a C++ compiler and takes tens of seconds per graph on
this machine's CPU (benchmarks/compiled_step.py measures it).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.runtime.errors import RunError, StagegraphWarning

AOT = {"backend": "aot_eager"}


class Losses(sg.Callback):
    """Records every training batch's loss, and the compilations at each epoch's end."""

    order = sg.CallbackOrder.External
    reads = ("metric.loss",)

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []
        self.counts: list[dict[str, int | None]] = []

    def on_batch_end(self, runner: Any) -> None:
        if runner.is_train_loader:
            self.losses.append(float(runner.batch_metrics["loss"].detach()))

    def on_epoch_end(self, runner: Any) -> None:
        if runner.compiled is not None:
            self.counts.append(runner.compiled.counts())


class Stop(sg.Callback):
    """Fails the run at the end of global epoch ``at`` (a stand-in for a kill)."""

    order = sg.CallbackOrder.External + 10

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def on_epoch_end(self, runner: Any) -> None:
        if runner.global_epoch == self.at:
            raise KeyError("stop")


def _loaders() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(70, 6, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return {"train": DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                                generator=torch.Generator().manual_seed(4)),
            "valid": DataLoader(TensorDataset(x[:30], y[:30]), batch_size=8)}


def experiment(compile: Any = False, *, epochs: int = 2, model: Any = None,
               criterion: Any = None, stages: int = 1, **callbacks: sg.Callback
               ) -> tuple[sg.Experiment, Losses]:
    torch.manual_seed(0)
    model = model if model is not None else nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    losses = Losses()
    exp = sg.Experiment("compiled", model=model,
                        criterion=criterion if criterion is not None else nn.CrossEntropyLoss(),
                        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1,
                                                            momentum=0.9),
                        compile=compile)
    for index in range(stages):
        exp.add_stage(f"s{index}", num_epochs=epochs, loaders=_loaders(),
                      callbacks={"losses": losses, **callbacks} if index == 0 else {})
    return exp, losses


def run(exp: sg.Experiment, **runner: Any) -> sg.Runner:
    plan = sg.compile(exp)
    assert plan.ok, plan.errors
    return sg.Runner(plan, device="cpu", **runner).run()


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def eager() -> tuple[list[float], dict[str, torch.Tensor]]:
    exp, losses = experiment()
    runner = run(exp)
    return losses.losses, weights(runner.model)


@pytest.fixture
def no_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", StagegraphWarning)
        yield seen


@pytest.mark.parametrize("options", [AOT, {"backend": "eager", "dynamic": True}])
def test_the_compiled_run_has_the_eager_losses_and_weights(
        options: dict[str, Any], eager: tuple[list[float], dict[str, torch.Tensor]]) -> None:
    exp, losses = experiment(options)
    runner = run(exp)
    torch.testing.assert_close(losses.losses, eager[0], rtol=1e-5, atol=1e-6)
    assert_close(weights(runner.model), eager[1])


def test_compiled_once_per_stage_not_again_in_later_epochs(
        no_warnings: list[warnings.WarningMessage]) -> None:
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    exp, losses = experiment(AOT, epochs=3, model=model)
    runner = run(exp)
    first, *later = losses.counts
    assert all(count == first for count in later), losses.counts
    # train (with gradients) and eval (without), each with a smaller last batch
    assert set(first) == {"model", "criterion"} and 1 <= first["model"] <= 4
    assert runner.compilations == {"s0": first}
    assert runner.compiled is None and model._compiled_call_impl is None
    assert runner.model is model
    assert not [w for w in no_warnings if issubclass(w.category, StagegraphWarning)]


def test_each_stage_compiles_the_shared_model_again_and_gives_it_back() -> None:
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    exp, _ = experiment(AOT, epochs=1, model=model, stages=2)
    exp.stages[1].params["compile"] = False
    exp.add_stage("s2", loaders=_loaders(), compile={"backend": "eager"})
    runner = run(exp)
    assert set(runner.compilations) == {"s0", "s2"}
    assert all(count["model"] for count in runner.compilations.values())
    assert model._compiled_call_impl is None


def test_checkpoints_keep_the_modules_own_keys(tmp_path: Path) -> None:
    exp, _ = experiment(AOT, epochs=1)
    runner = run(exp, logdir=tmp_path)
    saved = torch.load(tmp_path / "checkpoints" / "s0.best.pth", weights_only=False)
    assert list(saved["model"]) == list(runner.model.state_dict()) == [
        "0.weight", "0.bias", "3.weight", "3.bias"]


def test_a_model_the_user_compiled_is_saved_without_the_orig_mod_prefix(tmp_path: Path) -> None:
    plain = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    exp, _ = experiment(AOT, epochs=1, model=torch.compile(plain, backend="eager"))
    run(exp, logdir=tmp_path)
    saved = torch.load(tmp_path / "checkpoints" / "s0.best.pth", weights_only=False)
    assert list(saved["model"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert plain._compiled_call_impl is None  # not compiled a second time inside


def test_a_compiled_run_resumes_to_the_uninterrupted_runs_weights(tmp_path: Path) -> None:
    whole, _ = experiment(AOT, epochs=3)
    reference = weights(run(whole, logdir=tmp_path / "whole").model)
    stopped, _ = experiment(AOT, epochs=3, stop=Stop(2))
    with pytest.raises(RunError, match="KeyError"):
        run(stopped, logdir=tmp_path / "cut")
    again, _ = experiment(AOT, epochs=3, stop=Stop(99))
    resumed = run(again, logdir=tmp_path / "cut", resume=True)
    assert resumed.resumed_from is not None
    assert_close(weights(resumed.model), reference)


def test_a_plain_function_criterion_is_compiled_for_the_stage(
        eager: tuple[list[float], dict[str, torch.Tensor]]) -> None:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, targets)

    exp, losses = experiment(AOT, criterion=loss)
    runner = run(exp)
    assert runner.compilations["s0"]["criterion"]
    torch.testing.assert_close(losses.losses, eager[0], rtol=1e-5, atol=1e-6)


def failing_backend(graph: Any, inputs: Any) -> Any:
    raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found (simulated)")


def test_a_backend_that_cannot_compile_falls_back_to_eager_with_a_warning(
        eager: tuple[list[float], dict[str, torch.Tensor]]) -> None:
    exp, losses = experiment({"backend": failing_backend})
    with pytest.warns(StagegraphWarning) as seen:
        runner = run(exp)
    messages = [str(w.message) for w in seen if issubclass(w.category, StagegraphWarning)]
    assert len(messages) == 2, messages  # the model and the criterion, once each
    assert messages[0].startswith("stage 's0': torch.compile's backend 'failing_backend' ")
    assert "could not compile the model, which runs eagerly for the rest of the stage" in (
        messages[0])
    assert "No working C++ compiler" in messages[0]
    assert "hint: compile={'backend': 'aot_eager'}" in messages[0]
    assert losses.losses == eager[0]  # eager from the first batch on: the very same numbers
    assert runner.model._compiled_call_impl is None


def test_torch_compile_missing_altogether_warns_and_runs_eagerly(
        monkeypatch: pytest.MonkeyPatch,
        eager: tuple[list[float], dict[str, torch.Tensor]]) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("torch.compile is not supported on Python 3.99+")

    monkeypatch.setattr(torch, "compile", unavailable)
    exp, losses = experiment(AOT, epochs=2)
    with pytest.warns(StagegraphWarning, match=r"^stage 's0': torch.compile is not available "
                      r"here, so the stage runs eagerly: RuntimeError: torch.compile is not "
                      r"supported") as seen:
        run(exp)
    assert len([w for w in seen if issubclass(w.category, StagegraphWarning)]) == 1
    assert losses.losses == eager[0]


def test_an_unknown_backend_name_is_an_error_naming_the_close_one() -> None:
    exp, _ = experiment({"backend": "aot_eagre"})
    with pytest.raises(RunError, match=r"stage 's0' > compile: torch.compile has no backend "
                                       r"'aot_eagre'. Did you mean 'aot_eager'\?"):
        run(exp)


def test_more_compilations_than_expected_are_reported_at_stage_end() -> None:
    batches = [(torch.randn(n, 6), torch.randint(0, 2, (n,))) for n in (3, 4, 5, 6, 7)]
    exp, _ = experiment({"backend": "eager", "dynamic": False}, epochs=1)
    exp.stages[0].loaders = {"train": batches, "valid": batches[:1]}
    with pytest.warns(StagegraphWarning) as seen:
        run(exp)
    messages = [str(w.message) for w in seen if issubclass(w.category, StagegraphWarning)]
    assert [m.split(",")[0] for m in messages] == [  # 5 sizes in train, 1 in eval
        "stage 's0': the compiled model was compiled 6 times",
        "stage 's0': the compiled criterion was compiled 6 times"]
    assert messages[0].startswith(
        "stage 's0': the compiled model was compiled 6 times, more than the 4 expected (one "
        "graph per mode, train and eval, and one more each for a batch of another size); "
        "TORCH_LOGS=recompiles says why")


def test_a_ddp_model_is_compiled_inside_its_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name, value in {"RANK": 0, "WORLD_SIZE": 1, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 1,
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}.items():
        monkeypatch.setenv(name, str(value))
    exp, eager = experiment()
    plain = run(exp)
    exp, losses = experiment(AOT)
    runner = run(exp)
    assert type(runner.model).__name__ == "DistributedDataParallel"
    assert runner.compilations["s0"]["model"]
    torch.testing.assert_close(losses.losses, eager.losses, rtol=1e-5, atol=1e-6)
    assert_close(weights(runner.model.module), weights(plain.model.module))


@pytest.mark.skipif(os.environ.get("STAGEGRAPH_TEST_INDUCTOR") != "1",
                    reason="inductor takes 44 s here with cold caches (16 s warm); "
                           "STAGEGRAPH_TEST_INDUCTOR=1 runs it")
def test_inductor_gives_the_eager_losses(
        eager: tuple[list[float], dict[str, torch.Tensor]]) -> None:
    # Inductor draws dropout masks from its own generator unless told to use eager's.
    exp, losses = experiment({"options": {"fallback_random": True}})
    runner = run(exp)
    torch.testing.assert_close(losses.losses, eager[0], rtol=1e-5, atol=1e-6)
    assert_close(weights(runner.model), eager[1])
