"""The optimizer state one stage leaves for a later one (``load_from_previous_stage``).

When a stage ends, the runner keeps its optimizer's ``state_dict`` with the names of the
parameters of each group (`carry`), while a later stage will start from it; that stage's new
optimizer takes the per-parameter state and keeps its own hyperparameters
(`load_previous_state`). Both must have the same groups of the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from stagegraph.runtime.optim import StageContext


@dataclass(frozen=True)
class CarriedOptimizer:
    """An optimizer's state at the end of a stage, kept for a later stage to start from."""

    stage: str
    state: dict[str, Any]  #: ``optimizer.state_dict()``
    names: tuple[tuple[str, ...], ...]  #: parameter names, group by group

    def layout(self) -> str:
        return _layout(self.names)


def load_previous_state(optimizer: torch.optim.Optimizer, model: Any,
                        context: StageContext) -> None:
    """Start ``optimizer`` from ``context.previous``: its per-parameter state (Adam's moments and
    step counts...), keeping this stage's hyperparameters (``lr``...). Both must have the same
    parameter groups with the same parameter names and shapes."""
    previous = context.previous
    if previous is None:
        raise ValueError(f"stage {context.stage!r} loads the optimizer state of the previous "
                         "stage (load_from_previous_stage), but no earlier stage had an "
                         "optimizer; drop the option from this stage")
    names = group_names(optimizer, model)
    if names != previous.names:
        raise ValueError(
            f"stage {context.stage!r} loads the optimizer state of stage {previous.stage!r} "
            "(load_from_previous_stage), but their parameter groups differ: "
            f"{previous.stage!r} has {previous.layout()}, {context.stage!r} has "
            f"{_layout(names)}; give both stages the same model and the same layerwise_params "
            "and no_bias_weight_decay, or drop load_from_previous_stage")
    own = optimizer.state_dict()
    try:
        optimizer.load_state_dict({"state": previous.state["state"],
                                   "param_groups": own["param_groups"]})
    except (ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"stage {context.stage!r} cannot start from the optimizer state of "
                         f"stage {previous.stage!r} (load_from_previous_stage): {err}") from err


def carry(stage: str, optimizer: Any, model: Any) -> CarriedOptimizer | None:
    """The state of ``optimizer`` to keep when stage ``stage`` ends (``None``: nothing to keep)."""
    import torch

    if not isinstance(optimizer, torch.optim.Optimizer):
        return None
    return CarriedOptimizer(stage, optimizer.state_dict(), group_names(optimizer, model))


def group_names(optimizer: torch.optim.Optimizer, model: Any) -> tuple[tuple[str, ...], ...]:
    """The names of the parameters of each group (``?`` for one that is not the model's),
    with their shapes: ``encoder.weight[64, 32]``."""
    known = {id(p): n for n, p in named_parameters(model)} if model is not None else {}
    return tuple(tuple(f"{known.get(id(p), '?')}{list(p.shape)}" for p in group["params"])
                 for group in optimizer.param_groups)


def named_parameters(model: Any) -> list[tuple[str, Any]]:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"an optimizer with options is built from a torch.nn.Module's named "
                        f"parameters, not {type(model).__name__}")
    return list(model.named_parameters())


def _layout(names: Sequence[Sequence[str]]) -> str:
    parts = []
    for i, group in enumerate(names):
        head = ", ".join(group[:3]) + (f", ... ({len(group)} parameters)" if len(group) > 3
                                      else "")
        parts.append(f"group {i}: [{head}]")
    return f"{len(names)} group(s): " + "; ".join(parts)
