"""`OptimizerCallback`: backward, optional gradient accumulation and clipping, optimizer step."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder
from stagegraph.runtime.errors import NonFiniteLossError, StagegraphWarning

if TYPE_CHECKING:
    import torch

#: What to do with a NaN or infinite loss.
NONFINITE = ("stop", "skip", "ignore")


class OptimizerCallback(Callback):
    """Back-propagates ``batch_metrics[metric_key]`` and steps the optimizer, on train loaders only.

    With ``accumulation_steps=N`` the loss is divided by ``N`` and the optimizer steps (then zeroes
    the gradients) after every ``N``-th batch, so ``N`` batches of size ``b`` give the same update
    as one batch of size ``N*b``. Batches left over at the end of the loader are stepped too, their
    gradients rescaled to the mean over the batches actually accumulated. Gradients are zeroed at
    the start of each train loader and after each step, never between accumulated batches.

    ``grad_clip_norm`` clips the total gradient norm, ``grad_clip_value`` each gradient element.
    With a ``runner.scaler`` (mixed precision) the loss is scaled before backward and the gradients
    are unscaled before clipping. A loss that does not require grad is skipped (no backward, not
    counted). At epoch end the first parameter group's learning rate goes to
    ``epoch_metrics["lr"]``. ``optimizer_key`` picks one optimizer from a dict of them; one
    callback per optimizer and stage (``claims``: two would step it twice per batch), and one
    per loss (two would back-propagate one graph twice: give each optimizer its own loss).

    ``nonfinite`` says what a NaN or infinite loss does: ``"stop"`` (the default) raises
    `NonFiniteLossError` before the step, so the run stops with the batch named and the last
    checkpoint untouched; ``"skip"`` leaves the batch out (no backward, no step) and warns at loader
    end with the count; ``"ignore"`` checks nothing. On CPU the check reads the loss value each
    batch (about a microsecond); on an accelerator that would synchronise every batch, so
    ``"stop"`` keeps a flag on the device and raises at the end of the loader instead.
    """

    order: ClassVar[int] = CallbackOrder.Optimizer
    kind: ClassVar[str | None] = "optimizer"
    needs: ClassVar[tuple[str, ...]] = ("optimizer",)

    def __init__(
        self,
        metric_key: str = "loss",
        accumulation_steps: int = 1,
        grad_clip_norm: float | None = None,
        grad_clip_value: float | None = None,
        optimizer_key: str | None = None,
        nonfinite: str = "stop",
        **declarations: Any,
    ) -> None:
        if not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be an int >= 1, not {accumulation_steps!r}")
        if grad_clip_norm is not None and grad_clip_value is not None:
            raise ValueError("give grad_clip_norm or grad_clip_value, not both")
        if nonfinite not in NONFINITE:
            raise ValueError(f"nonfinite must be one of {NONFINITE}, not {nonfinite!r}")
        declarations.setdefault("reads", (f"metric.{metric_key}",))
        declarations.setdefault("writes", ("epoch_metric.lr",))
        declarations.setdefault("claims", (f"optimizer:{optimizer_key or ''}",
                                           f"backward:{metric_key}"))
        super().__init__(**declarations)
        self.metric_key = metric_key
        self.accumulation_steps = accumulation_steps
        self.grad_clip_norm = grad_clip_norm
        self.grad_clip_value = grad_clip_value
        self.optimizer_key = optimizer_key
        self.nonfinite = nonfinite
        self._skipped: list[int] = []  # batches of this loader left out for a non-finite loss
        self._device_finite: Any = None  # "stop" on an accelerator: all losses finite so far
        self._optimizer: Any = None
        self._scaler: Any = None
        self._active = False
        self._pending = 0  # batches back-propagated since the last step

    def _resolve(self, runner: Any) -> Any:
        optimizer = runner.optimizer
        if optimizer is not None and self.optimizer_key is not None:
            optimizer = optimizer[self.optimizer_key]
        return optimizer

    def on_loader_start(self, runner: Any) -> None:
        self._active = bool(runner.is_train_loader)
        self._pending = 0
        self._skipped, self._device_finite = [], None
        if not self._active:
            return
        self._optimizer = self._resolve(runner)
        if self._optimizer is None:
            raise RuntimeError("OptimizerCallback runs on a train loader but runner.optimizer is "
                               "None; give the stage an optimizer (factory) or drop the callback")
        self._scaler = runner.scaler
        self._optimizer.zero_grad(set_to_none=True)

    def on_batch_end(self, runner: Any) -> None:
        if not self._active:
            return
        loss = runner.batch_metrics[self.metric_key]
        if not loss.requires_grad:
            return
        if self.nonfinite != "ignore" and not self._finite(loss, runner):
            return
        if self.accumulation_steps > 1:
            loss = loss / self.accumulation_steps
        if self._scaler is None:
            loss.backward()
        else:
            self._scaler.scale(loss).backward()
        self._pending += 1
        if self._pending >= self.accumulation_steps:
            self._step()

    def on_loader_end(self, runner: Any) -> None:
        if self._device_finite is not None and not bool(self._device_finite):
            raise NonFiniteLossError(_stop_message(
                f"a loss {self.metric_key!r} of this loader was NaN or infinite (checked at "
                f"loader end on {runner.device}, where a check per batch would synchronise)"))
        if self._skipped:
            warnings.warn(StagegraphWarning(
                f"stage {runner.stage_name!r}, epoch {runner.epoch}, loader "
                f"{runner.loader_name!r}: skipped {len(self._skipped)} step(s) whose loss "
                f"{self.metric_key!r} was NaN or infinite (batches {_batches(self._skipped)})"),
                stacklevel=2)
        if self._active and self._pending:
            # A partial accumulation: gradients hold sum(loss_i) / N over `_pending` batches.
            self._rescale(self.accumulation_steps / self._pending)
            self._step()
        self._active = False

    def on_epoch_end(self, runner: Any) -> None:
        optimizer = self._resolve(runner)
        if optimizer is not None and optimizer.param_groups:
            runner.epoch_metrics["lr"] = float(optimizer.param_groups[0]["lr"])

    def loader_state_dict(self) -> dict[str, Any]:
        """Steps pending in the accumulation (the runner saves the gradients themselves)."""
        return {"pending": self._pending, "skipped": list(self._skipped),
                "device_finite": self._device_finite}

    def load_loader_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = int(state["pending"])
        self._skipped = [int(n) for n in state["skipped"]]
        self._device_finite = state["device_finite"]

    def _finite(self, loss: torch.Tensor, runner: Any) -> bool:
        """Whether ``loss`` is finite; raises for ``"stop"``, records the batch for ``"skip"``."""
        if loss.is_cpu or self.nonfinite == "skip":
            value = loss.item() if loss.numel() == 1 else float(loss.detach().sum())
            if math.isfinite(value):
                return True
            if self.nonfinite == "stop":
                raise NonFiniteLossError(_stop_message(
                    f"the loss {self.metric_key!r} is {value}, so the optimizer did not step"))
            self._skipped.append(int(runner.loader_batch_step))
            return False
        import torch

        finite = torch.isfinite(loss.detach()).all()
        self._device_finite = finite if self._device_finite is None else (
            self._device_finite & finite)
        return True

    def _step(self) -> None:
        optimizer, scaler = self._optimizer, self._scaler
        clipping = self.grad_clip_norm is not None or self.grad_clip_value is not None
        if clipping:
            if scaler is not None:
                scaler.unscale_(optimizer)
            self._clip()
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self._pending = 0

    def _parameters(self) -> list[torch.Tensor]:
        return [p for group in self._optimizer.param_groups for p in group["params"]
                if p.grad is not None]

    def _clip(self) -> None:
        import torch

        params = self._parameters()
        if self.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip_norm)
        elif self.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, self.grad_clip_value)

    def _rescale(self, factor: float) -> None:
        if factor != 1.0:
            import torch

            with torch.no_grad():
                for p in self._parameters():
                    assert p.grad is not None
                    p.grad.mul_(factor)

    def __repr__(self) -> str:
        return (f"OptimizerCallback(metric_key={self.metric_key!r}, "
                f"accumulation_steps={self.accumulation_steps})")


def _stop_message(what: str) -> str:
    return (f"{what}; the last checkpoint is untouched; lower the learning rate, clip gradients "
            "(OptimizerCallback(grad_clip_norm=...)), check this batch's data, or leave such "
            "batches out with OptimizerCallback(nonfinite='skip')")


def _batches(numbers: list[int], shown: int = 5) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")
