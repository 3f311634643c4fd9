"""CriterionCallback and OptimizerCallback: loss, backward, accumulation, clipping, scaler."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from cb_helpers import batches, fire, make_runner, run_loader
from torch import nn

from stagegraph.runtime.callbacks import CriterionCallback, OptimizerCallback


def _setup(lr: float = 0.1, seed: int = 0, **optimizer_kwargs: Any) -> tuple[Any, list[Any]]:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    runner = make_runner(model=model, criterion=nn.CrossEntropyLoss(),
                         optimizer=torch.optim.SGD(model.parameters(), lr=lr))
    return runner, [CriterionCallback(), OptimizerCallback(**optimizer_kwargs)]


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _manual_step(model: nn.Module, features: torch.Tensor, targets: torch.Tensor,
                 lr: float = 0.1) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    nn.functional.cross_entropy(model(features), targets).backward()
    opt.step()


def test_criterion_writes_a_loss_with_grad() -> None:
    runner, (criterion, _) = _setup()
    runner.output = {"logits": runner.model(torch.randn(5, 4))}
    runner.input = {"targets": torch.tensor([0, 1, 2, 0, 1])}
    criterion.on_batch_end(runner)
    loss = runner.batch_metrics["loss"]
    assert loss.requires_grad and loss.ndim == 0
    expected = nn.functional.cross_entropy(runner.output["logits"], runner.input["targets"])
    assert torch.allclose(loss, expected)


def test_criterion_keys_follow_params() -> None:
    cb = CriterionCallback(input_key="scores", target_key="y", metric_key="ce")
    assert cb.reads == ("output.scores", "batch.y") and cb.writes == ("metric.ce",)
    runner = make_runner(criterion={"ce": nn.MSELoss()}, output={"scores": torch.ones(2)},
                         input={"y": torch.zeros(2)})
    CriterionCallback(input_key="scores", target_key="y", metric_key="ce",
                      criterion_key="ce").on_batch_end(runner)
    assert runner.batch_metrics["ce"].item() == pytest.approx(1.0)


def test_one_step_per_batch_equals_a_hand_written_loop() -> None:
    data = batches([8, 8, 8])
    runner, callbacks = _setup()
    reference = copy.deepcopy(runner.model)
    run_loader(runner, callbacks, "train", data)
    for features, targets in data:
        _manual_step(reference, features, targets)
    for got, want in zip(runner.model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_accumulated_small_batches_equal_one_big_batch() -> None:
    data = batches([8, 8, 8, 8])
    runner, callbacks = _setup(accumulation_steps=4)
    reference = copy.deepcopy(runner.model)
    run_loader(runner, callbacks, "train", data)
    _manual_step(reference, torch.cat([f for f, _ in data]), torch.cat([t for _, t in data]))
    for got, want in zip(runner.model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_leftover_batches_step_at_loader_end_as_their_mean() -> None:
    data = batches([8] * 6)  # accumulation 4: one full step, then 2 left over
    runner, callbacks = _setup(accumulation_steps=4)
    reference = copy.deepcopy(runner.model)
    steps: list[int] = []
    step = runner.optimizer.step
    runner.optimizer.step = lambda *a, **k: (steps.append(runner.loader_batch_step), step())[1]
    run_loader(runner, callbacks, "train", data)
    assert steps == [4, 6]
    cat = lambda part: (torch.cat([f for f, _ in part]), torch.cat([t for _, t in part]))  # noqa: E731
    _manual_step(reference, *cat(data[:4]))
    _manual_step(reference, *cat(data[4:]))
    for got, want in zip(runner.model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    assert all(p.grad is None for p in runner.model.parameters())


def test_gradients_are_zeroed_between_steps_not_between_accumulated_batches() -> None:
    runner, callbacks = _setup(accumulation_steps=2)
    seen: list[bool] = []  # whether gradients are present before each backward
    original = torch.Tensor.backward

    def spy(self: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        seen.append(any(p.grad is not None for p in runner.model.parameters()))
        original(self, *args, **kwargs)

    torch.Tensor.backward = spy  # type: ignore[method-assign]
    try:
        run_loader(runner, callbacks, "train", batches([4] * 4))
    finally:
        torch.Tensor.backward = original  # type: ignore[method-assign]
    assert seen == [False, True, False, True]


def test_no_backward_or_step_outside_train_loaders() -> None:
    runner, callbacks = _setup()
    before = _params(runner.model)
    run_loader(runner, callbacks, "valid", batches([4, 4]))
    assert all(torch.equal(a, b) for a, b in zip(before, _params(runner.model), strict=True))


def test_a_loss_without_grad_is_skipped() -> None:
    runner, (_, optimizer) = _setup()
    runner.is_train_loader = True
    optimizer.on_loader_start(runner)
    runner.batch_metrics = {"loss": torch.tensor(1.0)}
    optimizer.on_batch_end(runner)
    optimizer.on_loader_end(runner)
    assert all(p.grad is None for p in runner.model.parameters())


def _grads_at_step(runner: Any) -> list[torch.Tensor]:
    """Records the gradients the optimizer sees when it steps."""
    recorded: list[torch.Tensor] = []
    step = runner.optimizer.step

    def spy(*args: Any, **kwargs: Any) -> Any:
        recorded.append(torch.cat([p.grad.reshape(-1) for p in runner.model.parameters()]))
        return step(*args, **kwargs)

    runner.optimizer.step = spy
    return recorded


def test_clip_by_norm() -> None:
    runner, callbacks = _setup(grad_clip_norm=0.01)
    grads = _grads_at_step(runner)
    run_loader(runner, callbacks, "train", batches([8, 8]))
    assert len(grads) == 2
    assert all(g.norm() <= 0.01 + 1e-6 for g in grads)


def test_clip_by_value() -> None:
    runner, callbacks = _setup(grad_clip_value=0.001)
    grads = _grads_at_step(runner)
    run_loader(runner, callbacks, "train", batches([8, 8]))
    assert all(g.abs().max() <= 0.001 + 1e-9 for g in grads)
    assert any(g.abs().max() == pytest.approx(0.001) for g in grads)


def test_grad_scaler_unscales_before_clipping() -> None:
    runner, callbacks = _setup(grad_clip_norm=0.01)
    runner.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    grads = _grads_at_step(runner)
    run_loader(runner, callbacks, "train", batches([8, 8]))
    assert len(grads) == 2  # finite gradients: the scaler stepped
    assert all(g.norm() <= 0.01 + 1e-6 for g in grads)


def test_grad_scaler_without_clipping_matches_plain_training() -> None:
    data = batches([8, 8])
    runner, callbacks = _setup()
    scaled, scaled_callbacks = _setup()
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    run_loader(runner, callbacks, "train", data)
    run_loader(scaled, scaled_callbacks, "train", data)
    for a, b in zip(runner.model.parameters(), scaled.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_lr_recorded_at_epoch_end() -> None:
    runner, callbacks = _setup(lr=0.25)
    fire("on_epoch_end", runner, callbacks)
    assert runner.epoch_metrics == {"lr": 0.25}


def test_invalid_params_are_refused() -> None:
    with pytest.raises(ValueError, match="accumulation_steps"):
        OptimizerCallback(accumulation_steps=0)
    with pytest.raises(ValueError, match="not both"):
        OptimizerCallback(grad_clip_norm=1.0, grad_clip_value=1.0)


def test_missing_optimizer_is_reported() -> None:
    runner = make_runner(optimizer=None)
    with pytest.raises(RuntimeError, match=r"runner\.optimizer is None"):
        OptimizerCallback().on_loader_start(runner)
