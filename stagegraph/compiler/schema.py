"""Pass 1, schema: validate what the user wrote and turn it into a first, unordered plan.

Requires: anything (the experiment may be malformed in any way).
Guarantees: a plan whose stages are in declaration order with unique, non-empty names; every
callback entry is a `Callback` instance's declarations, validated, with the keys its code reads
or writes added (``inferred``; contradictions are SF517, see `compiler/inferred.py`); invalid
values are reported (SF1xx) and replaced by defaults so later passes can go on and find more
problems.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stagegraph.compiler.compile_options import compile_plan
from stagegraph.compiler.diagnostics import Diagnostics, did_you_mean
from stagegraph.compiler.fast_path_options import experiment_fast_path, fast_path_plan
from stagegraph.compiler.inference import infer_function
from stagegraph.compiler.inferred import covers, merge_inferred
from stagegraph.compiler.keys import is_valid_key
from stagegraph.compiler.plan import (
    CallbackPlan,
    ExecutionPlan,
    HandlerPlan,
    LoaderPlan,
    StagePlan,
)
from stagegraph.compiler.rules import LEVELS, RULES, closest_code
from stagegraph.graph.callback import Callback, overridden_events
from stagegraph.graph.enums import (
    EVENT_METHODS,
    CallbackNode,
    CallbackScope,
    LoaderKind,
    RankKind,
    is_infer_stage,
)
from stagegraph.graph.experiment import COMPONENTS, STAGE_DEFAULTS, Experiment, StageDef
from stagegraph.graph.handler import FunctionHandler, as_handler


class StageParams(BaseModel):
    """The stage parameters, validated strictly (``"3"`` is not an epoch count)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    num_epochs: int = Field(ge=1)
    main_metric: str = Field(min_length=1)
    minimize_metric: bool
    valid_loader: str = Field(min_length=1)
    migrate_from_previous_stage: bool
    check_run: bool
    precision: Literal["fp32", "amp", "bf16"]
    batch_keys: tuple[str, ...] | None = None
    fast_path: Any = True  # checked by `fast_path_plan` (SF101, SF531)
    compile: Any = None  # checked by `compile_plan` (SF530)


class CallbackDecl(BaseModel):
    """A callback's declarations, validated."""

    model_config = ConfigDict(strict=True, extra="forbid")

    order: int
    node: CallbackNode = Field(strict=False)
    scope: CallbackScope = Field(strict=False)
    after: tuple[str, ...]
    before: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    kind: str | None
    claims: tuple[str, ...]
    needs: tuple[str, ...]
    watch: str | None
    watch_minimize: bool | None
    lints: dict[str, str]


DECLARATION_FIELDS = tuple(CallbackDecl.model_fields)

DEVICE_PREFIXES = ("cpu", "cuda", "mps", "auto")


def schema(
    experiment: Experiment,
    diags: Diagnostics,
    *,
    device: str = "auto",
    rank: RankKind = RankKind.single,
    logdir: str | None = None,
    verbose: bool = True,
) -> ExecutionPlan:
    """Validate ``experiment`` and return its first plan (declaration order, no defaults)."""
    name = experiment.name if isinstance(experiment.name, str) and experiment.name else "?"
    if name == "?":
        diags.error("SF109", f"the experiment name must be a non-empty string, not "
                    f"{experiment.name!r}", "pass Experiment('my-experiment', ...)")
    seed = experiment.seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        diags.error("SF109", f"the experiment seed must be an int, not {seed!r}",
                    "pass seed=42 or any other integer", param="seed")
        seed = 42
    determinism = getattr(experiment, "deterministic", False)
    if not isinstance(determinism, bool):
        diags.error("SF109", f"the experiment's deterministic must be True or False, not "
                    f"{determinism!r}", "pass deterministic=True or leave it out",
                    param="deterministic")
        determinism = False
    _check_device(device, diags)
    if not experiment.stages:
        diags.error("SF104", "the experiment has no stages",
                    "add one with experiment.add_stage('train', loaders={...}, ...)")
    compile_plan(getattr(experiment, "compile", False), diags)  # reported once, here
    experiment_fast_path(getattr(experiment, "fast_path", True), diags)
    identities: dict[int, tuple[str, str]] = {}
    stages: list[StagePlan] = []
    seen: set[str] = set()
    for stage in experiment.stages:
        plan = _stage(experiment, stage, identities, seen, diags)
        if plan is not None:
            stages.append(plan)
    return ExecutionPlan(experiment=name, seed=seed, deterministic=determinism,
                         device=str(device), rank=rank,
                         logdir=logdir, verbose=verbose, stages=tuple(stages),
                         lints=lint_levels(experiment.lints, diags))


def _check_device(device: object, diags: Diagnostics) -> None:
    ok = isinstance(device, str) and (
        device in DEVICE_PREFIXES or _is_indexed(device, "cuda") or _is_indexed(device, "mps"))
    if not ok:
        diags.error("SF108", f"device {device!r} is not one stagegraph knows",
                    "use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'", param="device")


def _is_indexed(device: str, prefix: str) -> bool:
    head, _, index = device.partition(":")
    return head == prefix and index.isdigit()


def _stage(
    experiment: Experiment,
    stage: StageDef,
    identities: dict[int, tuple[str, str]],
    seen: set[str],
    diags: Diagnostics,
) -> StagePlan | None:
    if not isinstance(stage.name, str) or not stage.name.strip():
        diags.error("SF108", f"stage #{stage.index + 1} has an invalid name {stage.name!r}",
                    "stage names are non-empty strings such as 'pretrain' or 'train'")
        return None
    name = stage.name
    if name in seen:
        diags.error("SF103", f"stage {name!r} is declared more than once",
                    "give every stage its own name", stage=name)
        return None
    seen.add(name)
    for param in stage.unknown:
        diags.error("SF102", f"unknown stage parameter {param!r}."
                    + did_you_mean(param, STAGE_DEFAULTS),
                    f"stage parameters are: {', '.join(STAGE_DEFAULTS)}", stage=name, param=param)
    params = _params(stage, diags)
    own = stage.params.get("compile")
    params["compile"] = compile_plan(
        own if own is not None else getattr(experiment, "compile", False),
        diags if own is not None else Diagnostics(), stage=name)
    handler = _handler(experiment.stage_handler(stage), name, diags)
    loaders = _loaders(stage, diags)
    params["fast_path"], per_loader = fast_path_plan(
        stage.params.get("fast_path", True), getattr(experiment, "fast_path", True),
        (lp.name for lp in loaders), diags, stage=name)
    return StagePlan(
        name=name,
        index=stage.index,
        after=_after(stage, diags),
        is_infer=is_infer_stage(name),
        loaders=tuple(lp.model_copy(update={"fast_path": per_loader[lp.name]})
                      for lp in loaders),
        components=_components(experiment, stage, diags),
        handler=handler,
        callbacks=_callbacks(stage, identities, diags),
        lints=lint_levels(stage.lints, diags, stage=name),
        **params,
    )


def _params(stage: StageDef, diags: Diagnostics) -> dict[str, Any]:
    raw = dict(stage.params)
    if isinstance(raw.get("batch_keys"), list):
        raw["batch_keys"] = tuple(raw["batch_keys"])
    try:
        return StageParams(**raw).model_dump()
    except ValidationError as err:
        bad = set()
        for e in err.errors():
            param = str(e["loc"][0]) if e["loc"] else ""
            bad.add(param)
            diags.error("SF101", f"invalid value {raw.get(param)!r} for {param!r}: {e['msg']}",
                        _param_hint(param), stage=stage.name, param=param)
        fixed = {k: (STAGE_DEFAULTS[k] if k in bad else v) for k, v in raw.items()}
        return StageParams(**fixed).model_dump()


def _param_hint(param: str | None) -> str:
    hints = {
        "num_epochs": "num_epochs is an int of 1 or more",
        "main_metric": "main_metric names a metric, e.g. 'loss' or 'accuracy'",
        "minimize_metric": "minimize_metric is True or False",
        "valid_loader": "valid_loader names one of the stage's loaders, e.g. 'valid'",
        "migrate_from_previous_stage": "migrate_from_previous_stage is True or False",
        "check_run": "check_run is True or False",
        "precision": "precision is 'fp32', 'amp' or 'bf16'",
        "batch_keys": "batch_keys is a list of the keys every batch carries, e.g. ['features']",
        "fast_path": "fast_path is True, False or a mapping {loader name: True / False}",
        "compile": "compile is True, False or a dict of torch.compile options",
    }
    return hints.get(param or "", "see the stage parameters in docs/concepts.md")


def _after(stage: StageDef, diags: Diagnostics) -> tuple[str, ...]:
    after = stage.after
    if isinstance(after, (list, tuple)) and all(isinstance(a, str) for a in after):
        return tuple(dict.fromkeys(after))
    diags.error("SF101", f"'after' must be a list of stage names, not {after!r}",
                "write after=['pretrain']", stage=stage.name, param="after")
    return ()


def _loaders(stage: StageDef, diags: Diagnostics) -> tuple[LoaderPlan, ...]:
    if not isinstance(stage.loaders, Mapping):
        diags.error("SF101", f"loaders must be a mapping of name to loader, not "
                    f"{type(stage.loaders).__name__}",
                    "write loaders={'train': train_loader, 'valid': valid_loader}",
                    stage=stage.name, param="loaders")
        return ()
    loaders = []
    for loader_name, loader in stage.loaders.items():
        if not isinstance(loader_name, str) or not loader_name:
            diags.error("SF108", f"loader name {loader_name!r} is not a non-empty string",
                        "name loaders 'train', 'valid', 'infer' or with those prefixes",
                        stage=stage.name)
            continue
        _check_factory(loader, 0, diags, stage=stage.name, loader=loader_name)
        loaders.append(LoaderPlan(name=loader_name, kind=LoaderKind.of(loader_name)))
    return tuple(loaders)


#: How many positional arguments a component factory may take: the optimizer factory may take
#: the model, the scheduler factory the optimizer.
FACTORY_ARITY = {"model": (0,), "criterion": (0,), "optimizer": (0, 1), "scheduler": (0, 1)}
#: What the compiler accepts: a criterion function that cannot be called with no argument is the
#: loss itself, called as ``criterion(outputs, targets)``.
ACCEPTED_ARITY = {**FACTORY_ARITY, "criterion": (0, 2)}


#: The experiment-level components an inference stage leaves out (its own are kept).
INFER_SKIPS = ("optimizer", "scheduler")


def _components(experiment: Experiment, stage: StageDef, diags: Diagnostics
                ) -> dict[str, Literal["stage", "experiment"]]:
    found: dict[str, Literal["stage", "experiment"]] = {}
    infer = isinstance(stage.name, str) and is_infer_stage(stage.name)
    for component in COMPONENTS:
        if stage.components.get(component) is not None:
            found[component] = "stage"
        elif infer and component in INFER_SKIPS:
            continue  # an inference stage steps nothing: the experiment's are not built there
        elif experiment.components.get(component) is not None:
            found[component] = "experiment"
        else:
            continue
        value = experiment.component(stage, component)
        _check_factory(value, ACCEPTED_ARITY[component], diags, stage=stage.name, param=component)
    return found


FACTORY_HINTS = {
    "model": "a model factory takes no arguments: def make_model(): return MyNet(width=64)",
    "criterion": "a criterion is a loss object, a factory taking no arguments, or the loss "
                 "function itself taking (outputs, targets)",
    "optimizer": "an optimizer factory takes no argument or the model: "
                 "lambda model: torch.optim.Adam(model.parameters(), lr=1e-3)",
    "scheduler": "a scheduler factory takes no argument or the optimizer: "
                 "lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5)",
    "loader": "a loader factory takes no arguments: functools.partial(make_loader, 'train')",
}


def _check_factory(value: Any, arity: int | tuple[int, ...], diags: Diagnostics,
                   **location: str) -> None:
    """Plain functions must accept the arguments the runtime will pass; objects are left alone."""
    if not (inspect.isfunction(value) or inspect.ismethod(value)):
        return
    allowed = (arity,) if isinstance(arity, int) else arity
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return
    if not any(_accepts(signature, n) for n in allowed):
        what = " or ".join(str(n) for n in allowed)
        diags.error("SF110", f"factory {value.__qualname__}{signature} cannot be called with "
                    f"{what} positional argument(s)",
                    FACTORY_HINTS[location.get("param", "loader")], **location)


def _accepts(signature: inspect.Signature, n: int) -> bool:
    try:
        signature.bind(*range(n))
    except TypeError:
        return False
    return True


def _handler(value: Any, stage: str, diags: Diagnostics) -> HandlerPlan:
    handler = as_handler(value)
    if handler is None:
        diags.error("SF101", f"the batch handler must be callable as (runner, batch), not "
                    f"{value!r}", "pass a function or a stagegraph.SupervisedHandler",
                    stage=stage, param="handler")
        return HandlerPlan(type="invalid", declared=False)
    keys = (*handler.reads, *handler.writes)
    bad = [k for k in keys if not is_valid_key(k)]
    for key in bad:
        diags.error("SF106", f"handler key {key!r} is not of the form 'namespace.name'",
                    "write keys such as 'batch.images' or 'output.logits'",
                    stage=stage, param="handler")
    declared = not isinstance(handler, FunctionHandler) or handler.declared
    writes = tuple(k for k in handler.writes if k not in bad)
    if isinstance(handler, FunctionHandler):
        writes += _metrics_written_by(handler.fn, writes)
    return HandlerPlan(
        type=handler.description,
        reads=tuple(k for k in handler.reads if k not in bad),
        writes=writes,
        declared=declared,
    )


#: What a batch handler's code may write besides its output (which it returns).
_HANDLER_WRITES = ("metric.", "loader_metric.", "epoch_metric.")


def _metrics_written_by(fn: Any, declared: tuple[str, ...]) -> tuple[str, ...]:
    """Metric keys a handler function's code writes (``runner.batch_metrics["loss"] = ...``)
    that it does not declare: a handler computing its own loss provides it like a criterion."""
    found = (a.key for a in infer_function(fn)
             if a.access == "write" and a.key.startswith(_HANDLER_WRITES))
    return tuple(k for k in dict.fromkeys(found) if not covers(declared, k))


def _callbacks(stage: StageDef, identities: dict[int, tuple[str, str]], diags: Diagnostics
               ) -> tuple[CallbackPlan, ...]:
    if not isinstance(stage.callbacks, Mapping):
        diags.error("SF101", f"callbacks must be a mapping of name to callback, not "
                    f"{type(stage.callbacks).__name__}",
                    "write callbacks={'accuracy': Accuracy()}", stage=stage.name,
                    param="callbacks")
        return ()
    plans = []
    for cb_name, callback in stage.callbacks.items():
        if not isinstance(cb_name, str) or not cb_name:
            diags.error("SF108", f"callback name {cb_name!r} is not a non-empty string",
                        "name callbacks with strings such as 'accuracy'", stage=stage.name)
            continue
        plan = _callback(stage.name, cb_name, callback, identities, diags)
        if plan is not None:
            plans.append(plan)
    return tuple(plans)


def _callback(stage: str, name: str, callback: Any, identities: dict[int, tuple[str, str]],
              diags: Diagnostics) -> CallbackPlan | None:
    where = {"stage": stage, "callback": name}
    if not isinstance(callback, Callback):
        hint = ("you passed the class; pass an instance, e.g. MyCallback()"
                if isinstance(callback, type) and issubclass(callback, Callback)
                else "callbacks subclass stagegraph.Callback")
        diags.error("SF105", f"{callback!r} is not a stagegraph Callback", hint, **where)
        return None
    decl = _declarations(callback, diags, where)
    _check_event_names(callback, diags, where)
    declared_in, _ = identities.setdefault(id(callback), (stage, name))
    cls = type(callback)
    decl["lints"] = lint_levels(decl["lints"], diags, **where)
    decl["reads"], decl["writes"], inferred = merge_inferred(cls, decl["reads"], decl["writes"],
                                                             diags, **where)
    return CallbackPlan(
        name=name,
        type=f"{cls.__module__}.{cls.__qualname__}",
        declared_in=declared_in,
        events=overridden_events(callback),
        inferred=inferred,
        **decl,
    )


def _declarations(callback: Callback, diags: Diagnostics, where: dict[str, str]
                  ) -> dict[str, Any]:
    raw = {
        field: getattr(callback, field)
        for field in DECLARATION_FIELDS
    }
    for field in ("after", "before", "reads", "writes", "claims", "needs"):
        if isinstance(raw[field], str):
            raw[field] = (raw[field],)
        elif isinstance(raw[field], list):
            raw[field] = tuple(raw[field])
    if isinstance(raw["order"], int) and not isinstance(raw["order"], bool):
        raw["order"] = int(raw["order"])
    try:
        decl = CallbackDecl(**raw).model_dump()
    except ValidationError as err:
        bad = {str(e["loc"][0]) for e in err.errors()}
        for field in sorted(bad):
            diags.error("SF106", f"invalid declaration {field}={raw[field]!r}",
                        _decl_hint(field), **where)
        decl = CallbackDecl(**{k: (getattr(Callback, k) if k in bad else v)
                               for k, v in raw.items()}).model_dump()
    for field in ("reads", "writes"):
        good = []
        for key in decl[field]:
            if is_valid_key(key):
                good.append(key)
            else:
                diags.error("SF106", f"{field} key {key!r} is not of the form 'namespace.name'",
                            "write keys such as 'batch.targets', 'output.logits' or "
                            "'metric.loss'", **where)
        decl[field] = tuple(good)
    return decl


def _decl_hint(field: str) -> str:
    return {
        "order": "order is an int; use a stagegraph.CallbackOrder bucket such as "
                 "CallbackOrder.Metric",
        "node": "node is 'all', 'master' or 'worker' (stagegraph.CallbackNode)",
        "scope": "scope is 'stage' or 'experiment' (stagegraph.CallbackScope)",
        "kind": "kind is a string such as 'criterion', or None",
        "watch": "watch names a valid metric such as 'accuracy', or '{main_metric}', or None",
        "watch_minimize": "watch_minimize is True, False or None (the stage's minimize_metric)",
        "lints": "lints maps codes to levels, e.g. {'SF301': 'allow'}",
    }.get(field, f"{field} is a list of strings")


def _check_event_names(callback: Callback, diags: Diagnostics, where: dict[str, str]) -> None:
    cls: type = type(callback)
    for attr in _unknown_event_like(cls):
        diags.error("SF107", f"method {attr!r} looks like an event but is not one, so it "
                    "is never called." + did_you_mean(attr, EVENT_METHODS),
                    f"events are: {', '.join(EVENT_METHODS)}", **where)


@functools.lru_cache(maxsize=1024)
def _unknown_event_like(cls: type) -> tuple[str, ...]:
    """Methods of ``cls`` named ``on_*`` that are not events (misspelt events, usually)."""
    known = set(EVENT_METHODS) | set(dir(Callback))
    return tuple(a for a in dir(cls) if a.startswith("on_") and a not in known
                 and callable(getattr(cls, a)))


def lint_levels(value: Any, diags: Diagnostics, **where: str) -> dict[str, str]:
    """``lints=`` validated: known codes to known levels; a fixed rule stays an error."""
    if not isinstance(value, Mapping):
        diags.error("SF111", f"lints must be a mapping of code to level, not {value!r}",
                    "write lints={'SF506': 'allow'}", param="lints", **where)
        return {}
    levels: dict[str, str] = {}
    for code, level in value.items():
        if code not in RULES:
            guess = closest_code(code)
            diags.error("SF111", f"lints names an unknown code {code!r}."
                        + (f" Did you mean {guess!r}?" if guess else ""),
                        "`stagegraph validate --explain CODE` describes a code", param="lints",
                        **where)
        elif level not in LEVELS:
            diags.error("SF111", f"lints gives {code} the unknown level {level!r}."
                        + did_you_mean(level, LEVELS),
                        f"levels are: {', '.join(LEVELS)}", param="lints", **where)
        elif RULES[code].fixed and level != RULES[code].default:
            diags.error("SF111", f"{code} is fixed at {RULES[code].default!r} and cannot be set "
                        f"to {level!r}: {RULES[code].why_fixed}", f"fix what {code} reports "
                        f"instead; `stagegraph validate --explain {code}` says how",
                        param="lints", **where)
        else:
            levels[str(code)] = str(level)
    return dict(sorted(levels.items()))
