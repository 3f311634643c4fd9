"""Convert a Catalyst 20.x config (its config API: ``catalyst-dl run --config``) into a
stagegraph config file.

Catalyst's ``stages:`` holds shared settings (``state_params`` — ``stage_params`` from 20.10 —,
``data_params``, ``criterion_params``, ``optimizer_params``, ``scheduler_params``,
``callbacks_params``) merged into each stage, then the stages by name. In the output the shared
components are the experiment's (``criterion:``, ``optimizer:``, ``scheduler:``; a stage with
its own settings gets the merged component), the shared stage parameters and callbacks go to
``defaults:``, and each stage keeps its own. What cannot be translated is reported as a located
diagnostic (``SF850``-``SF858``) and noted in the output where it applies. No torch, no user
module: the converter reads and writes text. See docs/from-catalyst.md#converting-a-config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from stagegraph.config import catalyst_components as components
from stagegraph.config.catalyst_callbacks import convert_callback
from stagegraph.config.catalyst_names import module_of
from stagegraph.config.catalyst_report import Context, deep_merge
from stagegraph.config.catalyst_top import top_level
from stagegraph.config.document import Document, read_document
from stagegraph.config.emit import Block, dump, plain
from stagegraph.config.problems import ConfigProblem, Path, Position, Problems

#: Catalyst's stage settings, shared (under ``stages:``) or per stage.
SECTIONS = ("state_params", "stage_params", "data_params", "transform_params",
            "criterion_params", "optimizer_params", "scheduler_params", "callbacks_params")
#: Stage parameters with the same meaning in stagegraph.
STAGE_PARAMS = ("num_epochs", "main_metric", "minimize_metric", "valid_loader",
                "migrate_from_previous_stage", "check_run")
COMPONENTS = {"criterion": "criterion_params", "optimizer": "optimizer_params",
              "scheduler": "scheduler_params"}
#: Catalyst callbacks that did nothing in an infer* stage (no optimizer, no valid metrics).
INFER_NOOPS = ("OptimizerCallback", "SchedulerCallback", "CheckpointCallback",
               "EarlyStoppingCallback")


@dataclass
class Conversion:
    """The converted config: ``text`` (``None`` when the file is not a Catalyst config),
    ``data`` (what ``text`` reads back as) and the ``problems`` found, in file order."""

    text: str | None
    data: Any
    problems: list[ConfigProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.text is not None


def convert_catalyst(path: str, *, name: str | None = None,
                     data_factory: str | None = None) -> Conversion:
    """Convert the Catalyst 20.x config file at ``path``.

    ``name``: the experiment's name (default: the file's stem); ``data_factory``: the dotted
    path of the loaders factory the output names (default: ``loaders`` in the config's
    ``expdir`` module).
    """
    problems = Problems()
    document = read_document(path, problems)
    if document is None:
        return Conversion(None, None, problems.items)
    return convert_document(document, name=name or FilePath(path).stem,
                            data_factory=data_factory)


def convert_document(document: Document, *, name: str, data_factory: str | None = None
                     ) -> Conversion:
    """Convert a Catalyst config already read (`stagegraph.config.document`)."""
    data = document.data
    stages = data.get("stages") if isinstance(data, dict) else None
    problems = Problems()
    if isinstance(data, dict) and "experiment" in data:
        problems.error("SF850", "this is a stagegraph config already (it has experiment:), not "
                       "a Catalyst 20.x one", "check it with stagegraph validate; it needs no "
                       "conversion", document.key_at(("experiment",)))
        return Conversion(None, None, problems.items)
    if not isinstance(stages, dict) or not _stage_names(stages):
        position = (document.key_at(("stages",)) if isinstance(data, dict) and "stages" in data
                    else Position(document.file, 1, 1))
        problems.error("SF850", "this is not a Catalyst 20.x config: it has no stages: mapping "
                       "with at least one stage", "convert the YAML file you ran with "
                       "catalyst-dl run --config", position)
        return Conversion(None, None, problems.items)
    args = data.get("args") if isinstance(data.get("args"), dict) else {}
    expdir = args.get("expdir")
    ctx = Context(document, (module_of(expdir) or None) if isinstance(expdir, str) else None)
    _survey(ctx, stages)
    factory = data_factory or (f"{ctx.module}.{components.DATA_FACTORY}" if ctx.module
                               else f"TODO.{components.DATA_FACTORY}")
    out = Block()
    out.add("experiment", name)
    top = top_level(ctx, data, out)
    shared = {key: stages.get(key) for key in SECTIONS if key in stages}
    for kind, section in COMPONENTS.items():
        if shared.get(section):
            built = components.component(ctx, kind, shared[section], ("stages", section))
            if built is not None:
                out.add(kind, built)
    if top.handler is not None:
        out.add("handler", top.handler, note="runner_params")
    defaults = Block()
    _stage_params(ctx, _params(shared), _params_path(shared, ("stages",)), defaults)
    if top.precision is not None:
        defaults.add("precision", top.precision)
    callbacks, check_run = _callbacks(ctx, shared.get("callbacks_params"), {}, ("stages",))
    if top.timer:
        callbacks.add("timer", {"_target_": "TimerCallback"}, note="args.timeit")
    _add_callbacks(defaults, callbacks, check_run)
    if defaults:
        out.add("defaults", defaults, comment="shared by every stage (Catalyst's stages: "
                "*_params), merged into each")
    body = Block()
    names = _stage_names(stages)
    for stage, after in zip(names, [*names[1:], None], strict=True):
        body.add(stage, _stage(ctx, stage, stages, shared, factory, after))
    out.add("stages", body)
    for key in stages:
        if key not in SECTIONS and key not in _stage_names(stages) and stages[key] is not None:
            ctx.wrong(("stages", key), "a stage: a mapping of *_params")
    header = [f"Converted from {document.file} by `stagegraph convert catalyst` (Catalyst 20.x).",
              "Review the TODO notes (stagegraph convert lists them with their lines), write",
              "the loaders factory, then check it: stagegraph validate <this file>",
              "yaml-language-server: $schema=stagegraph.schema.json"]
    return Conversion(dump(out, header), plain(out), ctx.sorted_problems())


def _stage_names(stages: Mapping[Any, Any]) -> list[str]:
    return [k for k, v in stages.items() if k not in SECTIONS and isinstance(v, dict)]


def _survey(ctx: Context, stages: Mapping[str, Any]) -> None:
    """Facts the translation of one place needs from others: the accuracy metrics' names, and
    whether an OptimizerCallback turned off Catalyst's decoupled weight decay."""
    blocks = [stages.get("callbacks_params")]
    blocks += [s.get("callbacks_params") for s in stages.values() if isinstance(s, dict)]
    for block in blocks:
        for params in (block or {}).values() if isinstance(block, dict) else ():
            if not isinstance(params, dict):
                continue
            if params.get("callback") == "AccuracyCallback":
                ctx.accuracy_prefixes.add(str(params.get("prefix", "accuracy")))
            if params.get("callback") == "OptimizerCallback" and params.get(
                    "decouple_weight_decay") is False:
                ctx.decoupled = False


def _params(sections: Mapping[str, Any]) -> Any:
    """A stage's parameters: ``stage_params`` (20.10+) over ``state_params`` (20.08-20.09)."""
    state, stage = sections.get("state_params"), sections.get("stage_params")
    if isinstance(state, dict) and isinstance(stage, dict):
        return {**state, **stage}
    return stage if stage is not None else state


def _params_path(sections: Mapping[str, Any], base: Path) -> Path:
    return (*base, "stage_params" if "stage_params" in sections else "state_params")


def _stage_params(ctx: Context, params: Any, path: Path, out: Block) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        ctx.wrong(path, "a mapping of stage parameters (num_epochs: 3, ...)")
        return
    for key, value in params.items():
        where = (*path, key)
        if key in STAGE_PARAMS:
            renamed = ctx.metric(value) if key == "main_metric" else value
            note = (ctx.info("SF856", where, f"main_metric {value!r} is {renamed!r} in "
                               "stagegraph (its top-1 accuracy has no 01 suffix)", value=True)
                    if renamed != value else "")
            out.add(key, renamed, note=note)
        elif key == "checkpoint_data":
            ctx.warning("SF854", where, "checkpoint_data has no stagegraph equivalent; left out "
                       f"({value!r})", "stagegraph saves the effective config beside the plan "
                       "in the logdir; keep such notes in the config as comments")
        elif key in ("logdir", "verbose", "is_check_run"):
            ctx.info("SF856", where, f"{key} is a command-line option in stagegraph",
                       "stagegraph run exp.yaml --logdir DIR (--quiet, --check)")
        else:
            ctx.unknown(where, [*STAGE_PARAMS, "checkpoint_data"], "state_params")


def _stage(ctx: Context, stage: str, stages: Mapping[str, Any], shared: Mapping[str, Any],
           factory: str, after: str | None) -> Block:
    own = stages[stage]
    path: Path = ("stages", stage)
    out = Block()
    for key in own:
        if key not in SECTIONS:
            ctx.unknown((*path, key), SECTIONS, f"stage {stage!r}")
    _stage_params(ctx, _params(own), _params_path(own, path), out)
    data = deep_merge(shared.get("data_params") or {}, own.get("data_params") or {})
    extra = {"transform_params": deep_merge(shared.get("transform_params") or {},
                                            own.get("transform_params") or {})}
    where = (*path, "data_params") if "data_params" in own else ("stages", "data_params")
    if "data_params" not in own and "data_params" not in shared:
        where = path
    merged = {**data, **({k: v for k, v in extra.items() if v})}
    out.add("loaders", components.loaders(ctx, stage, merged, where, factory))
    for kind, section in COMPONENTS.items():
        if section in own and own[section] is not None:
            params = deep_merge(shared.get(section) or {}, own[section])
            built = components.component(ctx, kind, params, (*path, section))
            if built is not None:
                note = "merged with stages." + section if shared.get(section) else ""
                out.add(kind, built, comment=note)
    callbacks, check_run = _callbacks(ctx, own.get("callbacks_params"),
                                      shared.get("callbacks_params") or {}, path)
    if stage.startswith("infer"):
        _infer_noops(ctx, stage, shared.get("callbacks_params"), own.get("callbacks_params"),
                     callbacks)
    if after is not None and not stage.startswith("infer"):
        _best_for_next(ctx, stage, after, deep_merge(shared.get("callbacks_params") or {},
                                                     own.get("callbacks_params") or {}),
                       callbacks)
    _add_callbacks(out, callbacks, check_run)
    return out


def _infer_noops(ctx: Context, stage: str, shared: Any, own: Any, callbacks: Block) -> None:
    """Shared callbacks that Catalyst ran as no-ops in an inference stage are removed from it
    (stagegraph would refuse them there: no optimizer, no valid metrics)."""
    own = own if isinstance(own, dict) else {}
    for name, params in (shared or {}).items() if isinstance(shared, dict) else ():
        kind = params.get("callback") if isinstance(params, dict) else None
        if kind in INFER_NOOPS and name not in own:
            callbacks.add(name, None, note=ctx.info(
                "SF856", ("stages", stage), f"the shared {kind} {name!r} is left out of the "
                f"inference stage {stage!r}, where Catalyst's did nothing"))


def _best_for_next(ctx: Context, stage: str, after: str, merged: Any, callbacks: Block) -> None:
    """Catalyst started every stage after the first from ``checkpoints/best.pth``: here the
    stage before it loads its best weights back when it ends (its checkpoint callback's
    ``load_best_on_stage_end``), unless the config says what to load at stage end."""
    merged = merged if isinstance(merged, dict) else {}
    found = [n for n, p in merged.items()
             if isinstance(p, dict) and p.get("callback") == "CheckpointCallback"]
    if any(merged[n].get("load_on_stage_end") is not None for n in found):
        return
    name = found[0] if found else "checkpoint"
    entry = callbacks.get(name)
    if entry is not None and not isinstance(entry.value, Block):
        return  # removed in this stage
    note = ctx.info("SF856", ("stages", after), f"Catalyst started stage {after!r} from the "
                      f"best checkpoint (best.pth): stage {stage!r} loads its best weights back "
                      "when it ends", value=False)
    if entry is not None:
        entry.value.add("load_best_on_stage_end", True, note=note)
        return
    added = Block()
    added.add("_target_", "CheckpointCallback")
    added.add("load_best_on_stage_end", True)
    callbacks.add(name, added, note=note)


def _callbacks(ctx: Context, own: Any, shared: Mapping[str, Any], path: Path
               ) -> tuple[Block, bool]:
    """A stage's (or the shared) ``callbacks_params``, and whether a CheckRunCallback asks for
    a check run. An entry that names another class than the shared one under its key is merged
    with it, as Catalyst merged them."""
    out = Block()
    if own is None:
        return out, False
    where = (*path, "callbacks_params")
    if not isinstance(own, dict):
        ctx.wrong(where, "a mapping {name: {callback: ClassName, ...}}")
        return out, False
    check_run = False
    for name, params in own.items():
        if params is None:
            out.add(name, None, note="removed, as in the Catalyst config")
            continue
        base = shared.get(name)
        if isinstance(base, dict) and isinstance(params, dict):
            params = deep_merge(base, params)
        if isinstance(params, dict) and params.get("callback") == "CheckRunCallback":
            check_run = True
            ctx.warning("SF855", (*where, name), "CheckRunCallback becomes the stage's "
                       "check_run: true (2 batches per loader, 2 epochs; Catalyst's "
                       "num_batch_steps / num_epoch_steps are left out)",
                       "or run the whole experiment so: stagegraph run exp.yaml --check")
            continue
        built, note = convert_callback(ctx, params, (*where, name))
        if built is None:
            out.omit(name, note)
        else:
            out.add(name, built, note=note)
    return out, check_run


def _add_callbacks(out: Block, callbacks: Block, check_run: bool) -> None:
    if check_run and out.get("check_run") is None:
        out.add("check_run", True)
    if callbacks:
        out.add("callbacks", callbacks)
    else:  # only notes: keep them without writing `callbacks:` (null would remove defaults)
        for entry in callbacks.entries:
            out.omit(f"callbacks.{entry.key}", entry.note)
