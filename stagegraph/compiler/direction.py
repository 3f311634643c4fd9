"""Metric direction: a well-known metric ranked the wrong way round (SF516).

Some metric names say which way is better: accuracy, f1, auc, ap / map, iou, dice, precision,
recall and r2 are maximised; loss, mae, mse, rmse, mape, error and perplexity are minimised. A
name is split into tokens on anything but letters and digits (``f1_macro`` -> ``f1``, ``macro``;
``valid_accuracy01`` -> ``valid``, ``accuracy01``), and a token is known as it is or without
trailing digits (``accuracy01`` -> ``accuracy``). Whole tokens only: ``apex`` is not ``ap`` and
``mape`` is not ``map``. A loss token decides (``dice_loss`` is minimised); otherwise the known
tokens must agree, and a name with none, or with a negation (``neg_mse``), has no known direction
and is never flagged.
"""

from __future__ import annotations

import re

from stagegraph.compiler.diagnostics import Diagnostics
from stagegraph.compiler.exclusive import origin_of
from stagegraph.compiler.plan import CallbackPlan, StagePlan

MAXIMISE = frozenset({"accuracy", "acc", "f1", "f1score", "fbeta", "fbetascore", "auc",
                      "auroc", "roc", "auprc", "ap", "map", "iou", "miou", "jaccard", "dice",
                      "precision", "recall", "r2", "r2score"})
MINIMISE = frozenset({"loss", "logloss", "mae", "mse", "rmse", "mape", "error", "perplexity"})
#: Tokens that make any other token decide nothing: a loss of anything is minimised.
LOSSES = frozenset({"loss", "error"})
#: Tokens that turn a direction round, so the name's direction is not known.
NEGATIONS = frozenset({"neg", "negative", "minus", "inv", "inverse"})

_TOKEN = re.compile(r"[a-z0-9]+")
_PLACEHOLDER = "{main_metric}"


def known_minimize(metric: str) -> bool | None:
    """``True`` if ``metric`` is minimised, ``False`` if maximised, ``None`` when not known.

    >>> known_minimize("accuracy01"), known_minimize("valid_loss"), known_minimize("apex")
    (False, True, None)
    """
    directions = set()
    for token in _TOKEN.findall(metric.lower()):
        if token in NEGATIONS:
            return None
        word = token if token in MAXIMISE | MINIMISE else token.rstrip("0123456789")
        if word in LOSSES:
            return True
        if word in MAXIMISE:
            directions.add(False)
        elif word in MINIMISE:
            directions.add(True)
    return directions.pop() if len(directions) == 1 else None


def check_direction(stage: StagePlan, diags: Diagnostics) -> None:
    """Report SF516 where ``stage`` or a callback ranks a well-known metric the wrong way round.

    Requires: the stage's callbacks complete; ``watch`` may still hold ``{main_metric}``.
    Guarantees: one error for the stage's ``main_metric`` against ``minimize_metric`` (training
    stages only), one per callback whose ``watch`` metric contradicts its effective
    ``watch_minimize`` (its own, else the stage's); unknown names are never flagged; adds
    diagnostics only.
    """
    if not stage.is_infer:
        _check_stage(stage, diags)
    for cb in stage.callbacks:
        if cb.watch is not None:
            _check_callback(stage, cb, diags)


def _direction(minimize: bool) -> str:
    return "minimised" if minimize else "maximised"


def _check_stage(stage: StagePlan, diags: Diagnostics) -> None:
    minimize = known_minimize(stage.main_metric)
    if minimize is None or minimize == stage.minimize_metric:
        return
    diags.error("SF516", f"main_metric {stage.main_metric!r} is a metric to be "
                f"{_direction(minimize)}, but minimize_metric={stage.minimize_metric}, so the "
                "'best' epoch (for validation, checkpoints, early stopping) would be the worst",
                f"pass minimize_metric={minimize} to add_stage(...); if a "
                f"{'lower' if stage.minimize_metric else 'higher'} {stage.main_metric!r} really "
                "is better, lints={'SF516': 'allow'} on the stage says so",
                stage=stage.name, param="minimize_metric")


def _check_callback(stage: StagePlan, cb: CallbackPlan, diags: Diagnostics) -> None:
    metric = (cb.watch or "").replace(_PLACEHOLDER, stage.main_metric)
    own = cb.watch_minimize
    if own is None and (metric == stage.main_metric or stage.is_infer):
        return  # the stage's own direction, checked (or not ranked) with the stage
    effective = stage.minimize_metric if own is None else own
    minimize = known_minimize(metric)
    if minimize is None or minimize == effective:
        return
    source = (f"watch_minimize={own}" if own is not None else
              f"no direction of its own, so the stage's minimize_metric={effective}")
    diags.error("SF516", f"{cb.name!r} ({origin_of(cb)}) ranks epochs by {metric!r}, a metric to "
                f"be {_direction(minimize)}, with {source}: it would keep the worst epochs as "
                "the best", f"give it the metric's direction: watch_minimize={minimize} (the "
                f"built-in callbacks take minimize={minimize}); if a "
                f"{'lower' if effective else 'higher'} {metric!r} really is better, "
                "lints={'SF516': 'allow'} on the callback says so",
                stage=stage.name, callback=cb.name, param="watch_minimize")
