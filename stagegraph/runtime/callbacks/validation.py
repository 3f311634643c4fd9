"""`ValidationManagerCallback`: valid metrics of each epoch and the best epoch of the stage."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder


def valid_metrics_of(epoch_metrics: dict[str, Any], valid_loader: str,
                     loaders: Any = ()) -> dict[str, Any]:
    """The metrics of ``valid_loader`` in ``epoch_metrics``, without the ``{loader}_`` prefix.

    Keys of other loaders whose names extend ``valid_loader`` (``valid_hard`` for ``valid``) are
    left out.

    >>> valid_metrics_of({"train_loss": 1, "valid_loss": 2, "valid_hard_loss": 3, "lr": 0.1},
    ...                  "valid", loaders=("train", "valid", "valid_hard"))
    {'loss': 2}
    """
    prefix = f"{valid_loader}_"
    longer = tuple(f"{name}_" for name in loaders if name != valid_loader
                   and str(name).startswith(prefix))
    return {key[len(prefix):]: value for key, value in epoch_metrics.items()
            if key.startswith(prefix) and not key.startswith(longer)}


def is_better(score: float, best: float | None, minimize: bool, min_delta: float = 0.0) -> bool:
    """Whether ``score`` improves on ``best`` by more than ``min_delta`` (``None``: no best yet).

    A NaN or infinite score is never better, not even than no best at all, so a diverged epoch
    can never become the best one (nor its checkpoint the best checkpoint).

    >>> is_better(0.5, 0.6, minimize=True), is_better(0.5, 0.6, minimize=False)
    (True, False)
    >>> is_better(float("nan"), None, minimize=True)
    False
    """
    if not math.isfinite(score):
        return False
    if best is None:
        return True
    return score < best - min_delta if minimize else score > best + min_delta


class ValidationManagerCallback(Callback):
    """Fills ``runner.valid_metrics``, ``runner.is_best_valid`` and ``runner.best_valid_metrics``.

    At epoch end ``valid_metrics`` are the ``valid_loader``'s entries of ``epoch_metrics``
    (``valid_loss`` -> ``loss``). The epoch is the best so far when ``valid_metrics[main_metric]``
    is strictly lower (``minimize_metric``) or higher than the best one; then
    ``best_valid_metrics`` becomes a copy of ``valid_metrics``. The best is kept per stage: it is
    reset at stage start, and ``is_best_valid`` is false at every epoch start.
    """

    order: ClassVar[int] = CallbackOrder.Validation
    reads: ClassVar[tuple[str, ...]] = ("epoch_metric.*",)
    writes: ClassVar[tuple[str, ...]] = ("valid.metrics", "valid.is_best", "valid.best_metrics")
    kind: ClassVar[str | None] = "validation"
    claims: ClassVar[tuple[str, ...]] = ("validation",)

    def __init__(self, **declarations: Any) -> None:
        super().__init__(**declarations)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, Any] = {}
        self._restored = False

    def on_stage_start(self, runner: Any) -> None:
        if not self._restored:
            self.best_score, self.best_epoch, self.best_metrics = None, None, {}
        self._restored = False  # resuming keeps the best of the interrupted run, once
        runner.valid_metrics = {}
        runner.best_valid_metrics = dict(self.best_metrics)
        runner.is_best_valid = False

    def on_epoch_start(self, runner: Any) -> None:
        runner.is_best_valid = False

    def on_epoch_end(self, runner: Any) -> None:
        loaders = runner.loaders.keys() if runner.loaders is not None else ()
        valid = valid_metrics_of(runner.epoch_metrics, runner.valid_loader, loaders)
        runner.valid_metrics = valid
        metric = runner.main_metric
        if metric not in valid:
            raise KeyError(f"main metric {metric!r} is not among the metrics of valid loader "
                           f"{runner.valid_loader!r}: {sorted(valid)}")
        score = float(valid[metric])
        if is_better(score, self.best_score, runner.minimize_metric):
            self.best_score, self.best_epoch = score, runner.epoch
            self.best_metrics = dict(valid)
            runner.best_valid_metrics = dict(valid)
            runner.is_best_valid = True
        else:
            runner.is_best_valid = False

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_metrics": dict(self.best_metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best epoch; the next ``on_stage_start`` keeps it instead of resetting."""
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        self.best_metrics = dict(state.get("best_metrics") or {})
        self._restored = True

    def __repr__(self) -> str:
        return "ValidationManagerCallback()"
