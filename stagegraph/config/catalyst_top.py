"""The top of a Catalyst 20.x config: ``model_params``, ``args``, ``runner_params``,
``distributed_params`` and the sections stagegraph has no place for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stagegraph.config import catalyst_components as components
from stagegraph.config.catalyst_report import Context
from stagegraph.config.emit import Block

#: The top-level sections of a Catalyst 20.x config.
SECTIONS = ("model_params", "args", "stages", "runner_params", "distributed_params",
            "monitoring_params", "experiment_params")
#: ``catalyst-dl run`` options that are stagegraph command-line options, and which.
CLI = {"logdir": "--logdir DIR", "baselogdir": "--logdir DIR", "check": "--check",
       "resume": "--resume PATH", "autoresume": "--resume", "distributed": "--ddp N",
       "verbose": "--quiet (when false)"}
#: ``args`` without an equivalent, and what to do instead.
NO_EQUIVALENT = {
    "overfit": "a loader factory that returns a few batches",
    "benchmark": "set torch.backends.cudnn.benchmark in your model factory",
}
#: ``args`` with nothing to translate.
QUIET = ("expdir", "configs", "seed", "timeit", "amp", "fp16", "apex")
#: ``distributed_params`` a stagegraph run takes from torchrun.
LAUNCH = ("rank", "world_size", "local_rank", "master_addr", "master_port", "backend")


@dataclass
class Top:
    """What the top sections give the rest of the output."""

    handler: Block | None = None
    timer: bool = False
    precision: str | None = None


def top_level(ctx: Context, data: dict[str, Any], out: Block) -> Top:
    """Write ``seed`` and ``model`` into ``out``; report the top-level settings."""
    top = Top()
    args = data.get("args")
    if args is not None and not isinstance(args, dict):
        ctx.wrong(("args",), "a mapping of catalyst-dl run options")
        args = None
    args = args or {}
    if "seed" in args:
        out.add("seed", args["seed"], note="args.seed")
    if args.get("deterministic"):
        out.add("deterministic", True, note="args.deterministic")
    if "model_params" in data:
        model = components.component(ctx, "model", data["model_params"], ("model_params",))
        if model is not None:
            out.add("model", model, note="model_params")
    _args(ctx, args, top)
    if "runner_params" in data:
        top.handler = components.handler(ctx, data["runner_params"], ("runner_params",))
    _distributed(ctx, data.get("distributed_params"), top)
    if data.get("monitoring_params"):
        ctx.warning("SF854", ("monitoring_params",), "monitoring_params (Weights & Biases, "
                   "Neptune, Alchemy) have no stagegraph equivalent; left out",
                   "log with a callback of yours (docs/callbacks.md)")
    experiment = data.get("experiment_params")
    if isinstance(experiment, dict) and experiment.get("experiment"):
        ctx.info("SF856", ("experiment_params", "experiment"), "stagegraph has no experiment "
                   f"class: {experiment['experiment']}.get_datasets becomes the loaders factory "
                   "each stage names", value=True)
    for key in data:
        if key not in SECTIONS:
            ctx.unknown((key,), SECTIONS, "a Catalyst 20.x config")
    return top


def _args(ctx: Context, args: dict[str, Any], top: Top) -> None:
    for key, value in args.items():
        where = ("args", key)
        if key in CLI:
            if key == "verbose" and value is not False:
                continue  # stagegraph prints progress by default
            if value not in (None, False):
                ctx.info("SF856", where, f"args.{key} is a command-line option of stagegraph "
                         f"run: {CLI[key]}", f"stagegraph run exp.yaml {CLI[key]}")
        elif key in NO_EQUIVALENT:
            if value not in (None, False):
                ctx.warning("SF854", where, f"args.{key} has no stagegraph equivalent; left out",
                           NO_EQUIVALENT[key])
        elif key == "deterministic":
            if value:
                ctx.warning("SF855", where, "args.deterministic becomes deterministic: true, "
                           "which besides cuDNN's flags turns on "
                           "torch.use_deterministic_algorithms: an operation without a "
                           "deterministic implementation raises",
                           "see 'Deterministic runs' in docs/runtime.md")
        elif key == "timeit":
            top.timer = bool(value)
        elif key in ("amp", "fp16", "apex"):
            if value:
                top.precision = "amp"
                if key != "amp":
                    ctx.warning("SF855", where, f"args.{key} (apex mixed precision) becomes "
                               "precision: amp, torch's native mixed precision", "")
        elif key not in QUIET:
            ctx.unknown(where, [*CLI, *NO_EQUIVALENT, *QUIET, "deterministic"], "args")


def _distributed(ctx: Context, params: Any, top: Top) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        ctx.wrong(("distributed_params",), "a mapping")
        return
    for key, value in params.items():
        where = ("distributed_params", key)
        if key in ("amp", "fp16"):
            if value:
                top.precision = "amp"
        elif key == "opt_level":
            if value is not None:
                top.precision = "amp"
                ctx.warning("SF855", where, f"apex opt_level {value!r} becomes precision: amp, "
                           "torch's native mixed precision (O1-like)", "", value=True)
        elif key in LAUNCH:
            ctx.info("SF856", where, f"distributed_params.{key} comes from the launcher: "
                       "stagegraph run exp.yaml --ddp N, or torchrun ... -m stagegraph run",
                       "")
        elif key == "syncbn":
            if value:
                ctx.warning("SF854", where, "syncbn has no stagegraph equivalent; left out",
                           "convert the model with torch.nn.SyncBatchNorm."
                           "convert_sync_batchnorm in your model factory")
        else:
            ctx.unknown(where, ["amp", "fp16", "opt_level", "syncbn", *LAUNCH],
                        "distributed_params")
