"""Catalyst 20.x components (``model_params``, ``criterion_params``, ``optimizer_params``,
``scheduler_params``, ``data_params``, ``runner_params``) as `_target_` mappings.

A Catalyst component is ``{<kind>: RegistryName, **arguments}``; its stagegraph twin is
``{_target_: import.path.Name, **arguments}``. The optimizer's Catalyst options
(``layerwise_params``, ``no_bias_weight_decay``, ``lr_linear_scaling``,
``load_from_previous_stage``) are stagegraph optimizer options of the same names
(docs/optimizers.md), with Catalyst's defaults written out where stagegraph's differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stagegraph.config.catalyst_names import torch_path
from stagegraph.config.catalyst_report import Context
from stagegraph.config.emit import Block
from stagegraph.config.problems import Path

#: Catalyst's default of ``lr_linear_scaling.base_batch_size``.
BASE_BATCH_SIZE = 256
#: Optimizer options stagegraph handles itself (passed through under the same names).
OPTIONS = ("layerwise_params", "no_bias_weight_decay", "lr_linear_scaling",
           "load_from_previous_stage")
#: torch optimizers whose default weight decay is not 0.
DEFAULT_DECAY = {"AdamW": 0.01}
#: The name of the data factory when the config names no expdir.
DATA_FACTORY = "loaders"


def component(ctx: Context, kind: str, params: Any, path: Path) -> Block | None:
    """The `_target_` mapping of a Catalyst ``{kind: Name, ...}`` mapping (``None``: left out)."""
    if not isinstance(params, Mapping):
        ctx.wrong(path, f"a mapping {{{kind}: Name, ...arguments}}")
        return None
    if params.get("_key_value"):
        ctx.warning("SF854", (*path, "_key_value"), f"several {kind}s by key (_key_value) have "
                   "no stagegraph config equivalent; left out", f"build the dict of {kind}s in "
                   f"a factory of yours and name it by _target_", value=True)
        return None
    name = params.get(kind)
    if not isinstance(name, str):
        ctx.wrong((*path, kind) if kind in params else path,
                  f"a mapping with the {kind}'s registry name ({kind}: Name)")
        return None
    out = Block()
    target = torch_path(kind, name) if kind != "model" else None
    note = ""
    if target is None:
        target = ctx.user_target(name)
        note = ctx.warning("SF852", (*path, kind), f"{name!r} is not a torch class the converter "
                          f"knows; assumed to be yours, {target}", "point _target_ at the class "
                          "(Catalyst found it by its registry name)", value=True)
    out.add("_target_", target, note=note)
    args = {k: v for k, v in params.items() if k != kind}
    if kind == "optimizer":
        _optimizer_args(ctx, name, args, path, out)
    else:
        for key, value in args.items():
            out.add(key, value)
    return out


def _optimizer_args(ctx: Context, name: str, args: dict[str, Any], path: Path,
                    out: Block) -> None:
    scaling = args.get("lr_linear_scaling")
    for key, value in args.items():
        where = (*path, key)
        if key == "lr" and isinstance(scaling, Mapping):
            ctx.info("SF856", where, "lr is left out: with lr_linear_scaling Catalyst replaced "
                       "it by lr_linear_scaling.lr scaled by the batch size", "")
        elif key == "lr_linear_scaling":
            _scaling(ctx, value, where, out)
        elif key == "layerwise_params":
            _layerwise(ctx, value, where, out)
        elif key == "load_from_previous_stage":
            out.add(key, value)
            if value:
                ctx.warning("SF855", where, "stagegraph starts from the optimizer state the "
                           "previous stage ended with; Catalyst loaded it from best_full.pth (the "
                           "best epoch's)", "the two agree when the previous stage's last epoch "
                           "is its best, or when it loads its best weights back "
                           "(CheckpointCallback load_best_on_stage_end) and ends there")
        elif key in ("_model", "optimizer_key"):
            ctx.warning("SF854", where, f"{key} (an optimizer of one of several models) has no "
                       "stagegraph config equivalent; left out", "give the stage one model, or "
                       "build the optimizers in a factory of yours")
        elif key != "no_bias_weight_decay":
            out.add(key, value)
    _no_bias(ctx, name, args, path, out)


def _scaling(ctx: Context, value: Any, where: Path, out: Block) -> None:
    if not isinstance(value, Mapping) or "lr" not in value:
        ctx.wrong(where, "a mapping {lr: base_lr, base_batch_size: n}")
        return
    scaling = {"lr": value["lr"], "base_batch_size": value.get("base_batch_size",
                                                                BASE_BATCH_SIZE)}
    note = "" if "base_batch_size" in value else "Catalyst's default base_batch_size"
    out.add("lr_linear_scaling", scaling, note=note)
    for key in value:
        if key not in ("lr", "base_batch_size"):
            ctx.unknown((*where, key), ("lr", "base_batch_size"), "lr_linear_scaling")


def _layerwise(ctx: Context, value: Any, where: Path, out: Block) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        ctx.wrong(where, "a mapping {pattern: {option: value}}")
        return
    out.add("layerwise_params", dict(value))
    if len(value) > 1:
        ctx.warning("SF855", where, "Catalyst merged the options of every pattern that matches a "
                   "parameter name; stagegraph takes those of the first matching pattern only",
                   "make sure no parameter name matches two patterns, or put the combined "
                   "options on the more specific pattern, first")


def _no_bias(ctx: Context, name: str, args: Mapping[str, Any], path: Path, out: Block) -> None:
    """Catalyst's default was ``no_bias_weight_decay: true``; it matters where there is decay."""
    decay = args.get("weight_decay", DEFAULT_DECAY.get(name, 0.0))
    layerwise = args.get("layerwise_params")
    if isinstance(layerwise, Mapping):
        decay = max([decay, *(o.get("weight_decay", 0.0) for o in layerwise.values()
                              if isinstance(o, Mapping))])
    given = args.get("no_bias_weight_decay")
    spare = True if given is None else bool(given)
    if decay and ctx.decoupled and name != "AdamW":
        ctx.warning("SF855", (*path, "weight_decay") if "weight_decay" in args else
                   (*path, "optimizer"), "Catalyst's OptimizerCallback decoupled weight decay "
                   "(decouple_weight_decay, true by default): it set the optimizer's to 0 and "
                   "applied p -= weight_decay * lr * p itself; stagegraph leaves weight decay to "
                   f"the optimizer, which for {name} adds it to the gradient",
                   "for Adam use torch.optim.AdamW (decoupled); keep the optimizer if coupled "
                   "decay is what you want")
    if not decay:
        if given is not None:
            out.add("no_bias_weight_decay", spare)
        return
    where = (*path, "no_bias_weight_decay") if given is not None else (*path, "optimizer")
    out.add("no_bias_weight_decay", spare,
            note="" if given is not None else "Catalyst's default")
    if spare:
        ctx.warning("SF855", where, "no_bias_weight_decay: stagegraph spares biases and every "
                   "one-dimensional parameter (normalisation weights too); Catalyst spared the "
                   "parameters named *bias only", "name the norm layers' weights in "
                   "layerwise_params with their weight_decay if they should decay",
                   value=given is None)


def loaders(ctx: Context, stage: str, data: Any, path: Path, factory: str) -> Block:
    """The stage's loaders: the factory to write, called with the stage's ``data_params``."""
    out = Block()
    note = ctx.warning("SF851", path, "Catalyst built each stage's loaders from your "
                      "Experiment.get_datasets(stage, **data_params); write "
                      f"{factory}(stage, **data_params) returning {{'train': DataLoader, "
                      "'valid': DataLoader}", "keep batch_size: lr_linear_scaling reads the "
                      "train loader's; an infer* stage returns {'infer': DataLoader}; list "
                      "other loader names in _names_")
    out.add("_target_", factory, note=note)
    out.add("stage", stage)
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key == "per_gpu_scaling" and value:
                ctx.warning("SF854", (*path, key), "per_gpu_scaling has no stagegraph "
                           "equivalent: the learning rate scales by the per-process batch size",
                           "with --ddp N, give base_batch_size per process")
            else:
                out.add(key, value)
    elif data is not None:
        ctx.wrong(path, "a mapping of the data factory's arguments")
    return out


def handler(ctx: Context, params: Any, path: Path) -> Block | None:
    """``runner_params`` of a SupervisedRunner as stagegraph's supervised handler."""
    if not isinstance(params, Mapping):
        ctx.wrong(path, "a mapping {input_key: ..., output_key: ...}")
        return None
    out = Block()
    out.add("_target_", "stagegraph.SupervisedHandler")
    names = {"input_key": "input_key", "input_target_key": "target_key",
             "output_key": "output_key"}
    for key, value in params.items():
        if key in names:
            if not isinstance(value, str):
                ctx.warning("SF854", (*path, key), f"{key} {value!r}: several keys have no "
                           "stagegraph equivalent; left out", "write a batch handler of yours "
                           "(docs/concepts.md)", value=True)
            else:
                out.add(names[key], value)
        elif key == "runner":
            if value != "SupervisedRunner":
                ctx.warning("SF854", (*path, key), f"the runner {value!r} has no stagegraph "
                           "config equivalent; the supervised handler is used", "port its "
                           "_handle_batch to a batch handler of yours and name it by handler: "
                           "{_target_: ...}", value=True)
        else:
            ctx.unknown((*path, key), [*names, "runner"], "runner_params")
    return out if len(out.entries) > 1 else None
