"""Catalyst 20.x callbacks (``callbacks_params``) as stagegraph's built-in callbacks.

Each entry of ``callbacks_params`` is ``name: {callback: CatalystName, **arguments}``. A
`Rule` says which built-in it becomes, which arguments carry over under which name, and which
Catalyst arguments have no equivalent (reported, left out). Catalyst's defaults that differ from
stagegraph's are written out, so the callback behaves as it did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stagegraph.config.catalyst_report import Context
from stagegraph.config.emit import Block
from stagegraph.config.problems import Path

Special = Callable[[Context, Mapping[str, Any], Path, Block], None]


@dataclass(frozen=True)
class Rule:
    """``target``: the built-in's class name; ``rename``: Catalyst argument -> stagegraph's;
    ``special``: arguments whose values change, handled by a function; ``defaults``: Catalyst's
    defaults written out where stagegraph's differ."""

    target: str
    rename: Mapping[str, str] = field(default_factory=dict)
    special: Mapping[str, Special] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # Catalyst arguments that change nothing here


# --- arguments whose values change --------------------------------------------------------------
def _multiplier(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    if args["multiplier"] != 1 and args["multiplier"] != 1.0:
        ctx.warning("SF854", (*path, "multiplier"), "multiplier has no stagegraph equivalent; "
                   "left out", "scale the loss in your criterion, or in a callback of yours")


def _grad_clip(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    params, where = args["grad_clip_params"], (*path, "grad_clip_params")
    if not isinstance(params, Mapping):
        ctx.wrong(where, "a mapping such as {func: clip_grad_norm_, max_norm: 1.0}")
        return
    func = str(params.get("func", "")).rsplit(".", 1)[-1]
    if func == "clip_grad_norm_" and "max_norm" in params and set(params) <= {
            "func", "max_norm", "norm_type"}:
        out.add("grad_clip_norm", params["max_norm"])
        if params.get("norm_type", 2) not in (2, 2.0):
            ctx.warning("SF854", where, "norm_type other than 2 has no stagegraph equivalent; "
                       "the norm is clipped as the 2-norm", "clip in a callback of yours")
    elif func == "clip_grad_value_" and set(params) == {"func", "clip_value"}:
        out.add("grad_clip_value", params["clip_value"])
    else:
        ctx.warning("SF854", where, f"grad_clip_params {dict(params)!r} has no stagegraph "
                   "equivalent; left out", "stagegraph clips with grad_clip_norm (the 2-norm) "
                   "or grad_clip_value")


def _topk(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    given = args.get("topk_args") or args.get("accuracy_args")
    if given is None:  # Catalyst's default: 1, then 3 and 5 when there are that many classes
        classes = args.get("num_classes")
        given = [1] + [k for k in (3, 5) if isinstance(classes, int) and classes > k]
    if given != [1]:
        out.add("topk", list(given))


def _activation(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    if args["activation"] not in (None, "Softmax", "none"):
        ctx.warning("SF855", (*path, "activation"), f"activation {args['activation']!r} is "
                   "left out: stagegraph's accuracy ranks the raw scores (the same for Softmax)",
                   "for binary scores AccuracyCallback thresholds at threshold= (0.0 on logits)")


def _checkpoint_end(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    value = args["load_on_stage_end"]
    if value in ("best", "best_full"):
        out.add("load_best_on_stage_end", True)
    elif value is not None:
        ctx.warning("SF854", (*path, "load_on_stage_end"), f"load_on_stage_end {value!r} has no "
                   "stagegraph equivalent; left out", "CheckpointCallback(load_best_on_stage_end="
                   "true) loads the best weights back; the last ones stay in the model anyway")


def _checkpoint_start(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    if args["load_on_stage_start"] is not None:
        ctx.warning("SF854", (*path, "load_on_stage_start"), "load_on_stage_start has no "
                   "stagegraph equivalent; left out", "the experiment's model carries its "
                   "weights from stage to stage; to load a file, do it in your model factory")


def _resume(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    for key in ("resume", "resume_dir"):
        if args.get(key) is not None:
            ctx.info("SF856", (*path, key), f"{key} is a command-line option in stagegraph",
                       "stagegraph run exp.yaml --logdir DIR --resume [PATH]")


def _tensorboard(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    if args.get("log_on_batch_end", True):
        out.add("log_batch_every", 1)
    if args.get("metric_names") is not None:
        ctx.warning("SF854", (*path, "metric_names"), "metric_names has no stagegraph "
                   "equivalent: every metric is logged", "")
    if args.get("log_on_epoch_end", True) is False:
        ctx.warning("SF854", (*path, "log_on_epoch_end"), "log_on_epoch_end: false has no "
                   "stagegraph equivalent: epoch metrics are always logged", "")


def _reduced_metric(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    if args["reduced_metric"] is not None:
        ctx.warning("SF855", (*path, "reduced_metric"), "stagegraph steps ReduceLROnPlateau on "
                   "the stage's main_metric; reduced_metric is left out",
                   f"make {ctx.metric(args['reduced_metric'])!r} the stage's main_metric")


def _stage_metric(ctx: Context, args: Mapping[str, Any], path: Path, out: Block) -> None:
    out.add("metric", ctx.metric(args.get("metric", "loss")))


RULES: dict[str, Rule] = {
    "CriterionCallback": Rule(
        "CriterionCallback",
        rename={"input_key": "target_key", "output_key": "input_key", "prefix": "metric_key",
                "criterion_key": "criterion_key"},
        special={"multiplier": _multiplier}),
    "OptimizerCallback": Rule(
        "OptimizerCallback",
        rename={"metric_key": "metric_key", "loss_key": "metric_key",
                "accumulation_steps": "accumulation_steps", "optimizer_key": "optimizer_key"},
        special={"grad_clip_params": _grad_clip},
        ignored=("decouple_weight_decay", "use_fast_zero_grad")),
    "SchedulerCallback": Rule(
        "SchedulerCallback", rename={"scheduler_key": "scheduler_key", "mode": "mode"},
        special={"reduced_metric": _reduced_metric}),
    "AccuracyCallback": Rule(
        "AccuracyCallback",
        rename={"input_key": "target_key", "output_key": "input_key", "prefix": "metric_key"},
        special={"topk_args": _topk, "accuracy_args": _topk, "num_classes": _topk,
                 "activation": _activation, "multiplier": _multiplier}),
    "CheckpointCallback": Rule(
        "CheckpointCallback", rename={"save_n_best": "save_n_best"},
        special={"load_on_stage_end": _checkpoint_end, "load_on_stage_start": _checkpoint_start,
                 "resume": _resume, "resume_dir": _resume},
        ignored=("metrics_filename",)),
    "EarlyStoppingCallback": Rule(
        "EarlyStoppingCallback",
        rename={"patience": "patience", "minimize": "minimize", "min_delta": "min_delta"},
        special={"metric": _stage_metric},
        defaults={"minimize": True, "min_delta": 1e-6}),
    "TimerCallback": Rule("TimerCallback"),
    "VerboseLogger": Rule("ConsoleLogger", ignored=("always_show", "exclude")),
    "ConsoleLogger": Rule("ConsoleLogger"),
    "TensorboardLogger": Rule(
        "TensorBoardLogger", special={"log_on_batch_end": _tensorboard,
                                      "log_on_epoch_end": _tensorboard,
                                      "metric_names": _tensorboard}),
    "CSVLogger": Rule("CSVLogger"),
    "ValidationManagerCallback": Rule("ValidationManagerCallback"),
}

#: Callbacks whose Catalyst arguments special functions read even when absent.
ALWAYS = {"AccuracyCallback": _topk, "EarlyStoppingCallback": _stage_metric,
          "TensorboardLogger": _tensorboard}

#: Catalyst callbacks without an equivalent, and what to use instead.
NO_EQUIVALENT = {
    "AUCCallback": "TorchMetricsCallback with torchmetrics.AUROC",
    "F1ScoreCallback": "TorchMetricsCallback with torchmetrics.F1Score",
    "PrecisionRecallF1ScoreCallback": "TorchMetricsCallback with torchmetrics.Precision, "
                                      "Recall and F1Score",
    "DiceCallback": "TorchMetricsCallback with torchmetrics' Dice",
    "IouCallback": "TorchMetricsCallback with torchmetrics.JaccardIndex",
    "MultiLabelAccuracyCallback": "TorchMetricsCallback with torchmetrics' multilabel accuracy",
    "ConfusionMatrixCallback": "TorchMetricsCallback with torchmetrics.ConfusionMatrix, or a "
                               "callback of yours",
    "MetricAggregationCallback": "a callback of yours that sums the losses into one metric "
                                 "(stagegraph's MetricAggregationCallback averages batch "
                                 "metrics over a loader)",
    "InferCallback": "PredictionWriter, which saves the outputs of infer* loaders",
    "InferMaskCallback": "PredictionWriter, then your own post-processing",
    "MixupCallback": "mixing in your batch handler",
    "BatchOverfitCallback": "a loader factory that returns a few batches",
    "OptunaCallback": "a callback of yours reporting the metric to Optuna",
    "WandbLogger": "a logger callback of yours",
    "NeptuneLogger": "a logger callback of yours",
    "AlchemyLogger": "a logger callback of yours",
    "TracerCallback": "torch.jit.trace on the saved model after the run",
    "PeriodicLoaderCallback": "stages with the loaders each needs",
    "ControlFlowCallback": "callbacks of the stages they belong to",
}


def convert_callback(ctx: Context, params: Any, path: Path) -> tuple[Block | None, str]:
    """The stagegraph callback for one ``callbacks_params`` entry, and a note for the output
    (a ``TODO`` when something is left out). ``(None, note)``: nothing to write."""
    if not isinstance(params, Mapping) or not isinstance(params.get("callback"), str):
        return None, ctx.wrong(path, "a mapping {callback: ClassName, ...arguments}")
    name, args = params["callback"], {k: v for k, v in params.items() if k != "callback"}
    if name in NO_EQUIVALENT:
        return None, ctx.warning(
            "SF853", (*path, "callback"), f"{name} has no stagegraph equivalent; left out",
            f"use {NO_EQUIVALENT[name]}", value=True)
    if name == "ExceptionCallback":
        return None, ctx.info("SF856", (*path, "callback"), "ExceptionCallback is left out: "
                                "stagegraph reports a failure with where it happened itself",
                                value=True)
    rule = RULES.get(name)
    if rule is None:
        return _user_callback(ctx, name, args, path), ""
    out = Block()
    out.add("_target_", rule.target)
    handled: set[Any] = set()
    for key, value in args.items():
        if key in rule.rename:
            if value is not None:  # Catalyst's "use the default"
                out.add(rule.rename[key], value)
        elif key in rule.special:
            if rule.special[key] not in handled:
                rule.special[key](ctx, args, path, out)
                handled.add(rule.special[key])
        elif key not in rule.ignored:
            ctx.unknown((*path, key), [*rule.rename, *rule.special, *rule.ignored],
                        f"Catalyst's {name}")
    extra = ALWAYS.get(name)
    if extra is not None and extra not in handled:
        extra(ctx, args, path, out)
    for key, value in rule.defaults.items():
        if out.get(key) is None:
            out.add(key, value)
    return out, ""


def _user_callback(ctx: Context, name: str, args: Mapping[str, Any], path: Path) -> Block:
    out = Block()
    target = ctx.user_target(name)
    out.add("_target_", target, note=ctx.warning(
        "SF852", (*path, "callback"), f"{name} is not a Catalyst callback the converter knows; "
        f"assumed to be yours, {target}", "point _target_ at the class, and port it to "
        "stagegraph.Callback (declare reads/writes; docs/from-catalyst.md)", value=True))
    for key, value in args.items():
        out.add(key, value)
    return out
