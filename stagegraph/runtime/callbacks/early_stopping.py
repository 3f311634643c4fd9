"""`EarlyStoppingCallback`: ends a stage when the main valid metric stops improving."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from stagegraph.graph.callback import Callback
from stagegraph.graph.enums import CallbackOrder
from stagegraph.runtime.callbacks.validation import is_better


@dataclass(frozen=True)
class EarlyStop:
    """What an early stopper decided when it ended a stage (the console prints it).

    >>> str(EarlyStop("train", 9, "loss", True, 0.25, 5, 4, 0.0)).split("; ")
    ['early stop after epoch 9: valid loss (min) did not improve for 4 epoch(s) (patience 4)', \
'best loss 0.25 at epoch 5']
    """

    stage: str
    epoch: int  # the epoch after which the stage ended
    metric: str
    minimize: bool
    best: float | None
    best_epoch: int | None
    patience: int
    min_delta: float

    def __str__(self) -> str:
        best = "none" if self.best is None else f"{self.best:.4g} at epoch {self.best_epoch}"
        delta = f" by more than {self.min_delta:g}" if self.min_delta else ""
        goal = "min" if self.minimize else "max"
        return (f"early stop after epoch {self.epoch}: valid {self.metric} ({goal}) did not "
                f"improve{delta} for {self.patience} epoch(s) (patience {self.patience}); best "
                f"{self.metric} {best}")


class EarlyStoppingCallback(Callback):
    """Sets ``runner.need_early_stop`` after ``patience`` epochs without improvement.

    An epoch improves when its valid metric beats the best so far by more than ``min_delta``
    (lower if minimising, higher otherwise). ``metric`` and ``minimize`` default to the stage's
    ``main_metric`` and ``minimize_metric``. The counters restart at each stage and are saved in
    checkpoints (:meth:`state_dict`). Not added by default: give it to the stages that need it.

    It declares what it watches, so the compiler checks the metric exists in each stage it runs
    in: ``reads`` the valid metric (``valid_metric.f1`` for ``metric="f1"``, else
    ``valid_metric.{main_metric}``), ``watch`` the same name, ``watch_minimize`` = ``minimize``.
    One early stopper per stage (``claims``).

    When it ends a stage, ``stopped`` holds an `EarlyStop` record (the metric, its best value and
    epoch, the patience), which the console prints; ``None`` while the stage goes on.

    >>> EarlyStoppingCallback(patience=3, min_delta=1e-3).state_dict()
    {'best': None, 'wait': 0, 'best_epoch': None}
    """

    order: ClassVar[int] = CallbackOrder.External
    writes: ClassVar[tuple[str, ...]] = ("state.need_early_stop",)
    kind: ClassVar[str | None] = "early_stopping"
    claims: ClassVar[tuple[str, ...]] = ("early_stopping",)

    def __init__(self, patience: int = 3, min_delta: float = 0.0, metric: str | None = None,
                 minimize: bool | None = None, **declarations: Any) -> None:
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1, not {patience!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, not {min_delta!r}")
        watched = metric or "{main_metric}"
        declarations.setdefault("reads", (f"valid_metric.{watched}",))
        declarations.setdefault("watch", watched)
        declarations.setdefault("watch_minimize", minimize)
        super().__init__(**declarations)
        self.patience = patience
        self.min_delta = min_delta
        self.metric = metric
        self.minimize = minimize
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped: EarlyStop | None = None
        self._restored = False

    def on_stage_start(self, runner: Any) -> None:
        if not self._restored:
            self.best, self.best_epoch, self.wait = None, None, 0
            self.stopped = None
        self._restored = False

    def on_epoch_end(self, runner: Any) -> None:
        metric = self.metric or runner.main_metric
        minimize = runner.minimize_metric if self.minimize is None else self.minimize
        if metric not in runner.valid_metrics:
            raise KeyError(f"EarlyStoppingCallback watches {metric!r}, which is not among the "
                           f"valid metrics {sorted(runner.valid_metrics)}")
        score = float(runner.valid_metrics[metric])
        if is_better(score, self.best, minimize, self.min_delta):
            self.best, self.best_epoch, self.wait = score, int(runner.epoch), 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            runner.need_early_stop = True
            self.stopped = EarlyStop(
                stage=runner.stage_name, epoch=int(runner.epoch), metric=metric,
                minimize=bool(minimize), best=self.best, best_epoch=self.best_epoch,
                patience=self.patience, min_delta=self.min_delta)

    def state_dict(self) -> dict[str, Any]:
        stopped = None if self.stopped is None else asdict(self.stopped)
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch,
                "stopped": stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters; the next ``on_stage_start`` keeps them."""
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        best_epoch = state.get("best_epoch")  # absent from checkpoints of older versions
        self.best_epoch = None if best_epoch is None else int(best_epoch)
        stopped = state.get("stopped")  # a resume of a stage this callback ended
        self.stopped = None if stopped is None else EarlyStop(**stopped)
        self._restored = True

    def __repr__(self) -> str:
        return f"EarlyStoppingCallback(patience={self.patience}, min_delta={self.min_delta})"
