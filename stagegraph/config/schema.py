"""The config file format as pydantic models: every key, its type and what it means.

The models validate a config file after its defaults are merged and its ``${...}`` are
interpolated; a mistake becomes a diagnostic at the key's or value's line and column
(`stagegraph.config.validation`). Their descriptions feed the JSON Schema that
``stagegraph schema --config`` prints for editors (`stagegraph.config.jsonschema`). Stage
fields may be ``null``: in a stage, ``null`` removes what ``defaults:`` gives.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

Level = Literal["error", "warning", "info", "allow"]
Precision = Literal["fp32", "amp", "bf16"]

#: The key that names what to import and call, as in Hydra.
TARGET_KEY = "_target_"
#: The key of a loader factory that names the loaders it returns.
NAMES_KEY = "_names_"
#: A dotted import path: ``pkg.module.Name`` or ``pkg.module:Name`` (``Name.attr`` after ``:``).
DOTTED = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$"

_LINTS = ("diagnostic levels by code, e.g. {SF506: allow}; see docs/diagnostics.md "
          "(`stagegraph validate --explain CODE`)")


class Strict(BaseModel):
    """A mapping whose keys are all known: an unknown key is an error with a did-you-mean."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Target(BaseModel):
    """A `_target_` mapping: a dotted import path and the keyword arguments it is called with.

    Nested `_target_` mappings among the arguments are instantiated first (depth-first) when the
    runtime calls it; validate and plan never call it.
    """

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True,
                              json_schema_extra={"additionalProperties": True})

    target: str = Field(
        alias="_target_", pattern=DOTTED,
        description="what to import and call: 'pkg.module.Name' or 'pkg.module:Name'; the other "
                    "keys are its keyword arguments")


class LinearScaling(Strict):
    """Scale the learning rate with the batch size: lr * batch_size / base_batch_size."""

    lr: float = Field(strict=False, gt=0, description="the learning rate at base_batch_size")
    base_batch_size: int = Field(ge=1, description="the batch size lr is given for")


class OptimizerTarget(Target):
    """The optimizer: called with the model's parameters first, then its keyword arguments.

    The keys below are stagegraph's own options, not passed to the target.
    """

    layerwise_params: dict[str, dict[str, Any]] | None = Field(
        None, description="per-layer options: a pattern of parameter names (such as "
                          "'encoder.*') -> options for that parameter group (such as {lr: 1e-4})")
    no_bias_weight_decay: bool | None = Field(
        None, description="no weight decay for biases and normalisation weights")
    lr_linear_scaling: LinearScaling | None = Field(
        None, description="scale the learning rate linearly with the batch size")
    load_from_previous_stage: bool | None = Field(
        None, description="start from the state of the optimizer of the latest earlier stage "
                          "that had one (same parameter groups), with this stage's "
                          "hyperparameters")


class LoaderFactory(Target):
    """A factory returning every loader of a stage as a mapping {name: loader}."""

    names: list[str] | None = Field(
        None, alias="_names_",
        description="the names of the loaders it returns (default: train and valid, or infer "
                    "in an infer* stage); the compiler checks a stage by them")


def _loaders_form(value: Any) -> str:
    if isinstance(value, dict) and TARGET_KEY in value:
        return "factory"
    return "named"


Loaders = Annotated[
    Annotated[LoaderFactory, Tag("factory")]
    | Annotated[dict[str, Target | None], Tag("named")],
    Discriminator(_loaders_form),
]

class CompileOptions(Strict):
    """The options `torch.compile` takes, for a stage's model and criterion."""

    mode: Literal["default", "reduce-overhead", "max-autotune",
                  "max-autotune-no-cudagraphs"] | None = Field(
        None, description="inductor's mode (default: torch's default)")
    fullgraph: bool | None = Field(None, description="refuse graph breaks (default false)")
    dynamic: bool | None = Field(None, description="true: symbolic shapes from the start; "
                                                   "false: a graph per shape; null (default): "
                                                   "symbolic after a second shape")
    backend: str | None = Field(None, min_length=1,
                                description="the backend's name: inductor (default), "
                                            "aot_eager, eager, ...")
    options: dict[str, Any] | None = Field(None, description="the backend's settings "
                                                             "(not with mode)")
    disable: bool | None = Field(None, description="compile nothing (default false)")


def _compile_form(value: Any) -> str:
    return "options" if isinstance(value, dict) else "flag"


#: ``compile:`` is true / false or the options (a mapping is checked key by key).
Compile = Annotated[
    Annotated[bool, Tag("flag")] | Annotated[CompileOptions, Tag("options")],
    Discriminator(_compile_form),
]

#: ``fast_path:`` in a stage is true / false or per loader ({valid: false}, checked key by key).
FastPath = Annotated[
    Annotated[bool, Tag("flag")] | Annotated[dict[str, bool], Tag("per_loader")],
    Discriminator(lambda value: "per_loader" if isinstance(value, dict) else "flag"),
]

_COMPILE = ("compile the model and criterion with torch.compile once per stage: true, false "
            "(default) or the options of torch.compile, such as {backend: aot_eager}")


def _component(what: str) -> Any:
    return Field(None, description=what)


_MODEL = "the model: a `_target_` called with no argument (an nn.Module, or a mapping of them)"
_CRITERION = "the criterion (loss): a `_target_` called with no argument"
_OPTIMIZER = ("the optimizer: a `_target_` called with the model's parameters and its keyword "
              "arguments, such as {_target_: torch.optim.Adam, lr: 0.001}")
_SCHEDULER = ("the learning-rate scheduler: a `_target_` called with the optimizer, such as "
              "{_target_: torch.optim.lr_scheduler.StepLR, step_size: 5}")
_HANDLER = ("the batch handler (the forward step): a `_target_` called with no argument that "
            "returns one, such as {_target_: stagegraph.SupervisedHandler, input_key: images}")
_LOADERS = ("the loaders: a mapping {name: {_target_: ...}} of loader factories, each called "
            "with no argument, or one `_target_` returning {name: loader}; names start with "
            "train, valid or infer")


class StageFields(Strict):
    """What a stage and the defaults: block may set."""

    num_epochs: int | None = Field(None, ge=1, description="how many epochs the stage runs "
                                                          "(default 1)")
    main_metric: str | None = Field(None, min_length=1,
                                    description="the valid metric that ranks epochs (default "
                                                "loss)")
    minimize_metric: bool | None = Field(None, description="whether a lower main_metric is "
                                                           "better (default true)")
    valid_loader: str | None = Field(None, min_length=1,
                                     description="the loader whose metrics are the valid "
                                                 "metrics (default valid)")
    migrate_from_previous_stage: bool | None = Field(
        None, description="receive the experiment-scoped callbacks of the stages it follows "
                          "(default true)")
    check_run: bool | None = Field(None, description="a quick run: a couple of batches per "
                                                     "loader and epochs (default false)")
    precision: Precision | None = Field(None, description="fp32 (default), amp (CUDA mixed "
                                                          "precision) or bf16")
    batch_keys: list[str] | None = Field(None, description="the keys every batch carries, so "
                                                           "that batch.* reads can be checked")
    fast_path: FastPath | None = Field(
        None, description="false: iterate every loader through its DataLoader, never the batch "
                          "fast path (default true); or per loader, {valid: false}")
    compile: Compile | None = Field(None, description=_COMPILE)
    lints: dict[str, Level] | None = Field(None, description=_LINTS + ", for this stage")
    model: Target | None = _component(_MODEL + "; replaces the experiment's in this stage")
    criterion: Target | None = _component(_CRITERION + "; replaces the experiment's here")
    optimizer: OptimizerTarget | None = _component(_OPTIMIZER + "; replaces the experiment's "
                                                                "here")
    scheduler: Target | None = _component(_SCHEDULER + "; replaces the experiment's here")
    handler: Target | None = _component(_HANDLER + "; replaces the experiment's here")
    loaders: Loaders | None = _component(_LOADERS)
    callbacks: dict[str, Target | None] | None = Field(
        None, description="the stage's callbacks by name: {name: {_target_: Class, ...}}; "
                          "built-in callbacks by class name (AccuracyCallback), others by "
                          "dotted path; null removes one that defaults gives")


class Defaults(StageFields):
    """Merged into every stage: a stage's own keys win, mappings (callbacks, loaders, the
    arguments of a `_target_`) merge key by key, and null in a stage removes a default."""


class Stage(StageFields):
    """One stage: its parameters, components, loaders and callbacks."""

    after: str | list[str] | None = Field(
        None, description="the stages this one follows and migrates from (default: the stage "
                          "before it in the file)")


class ConfigFile(Strict):
    """A stagegraph experiment: its components and its stages, in the order they run."""

    schema_url: str | None = Field(None, alias="$schema",
                                   description="the JSON Schema of this format, for editors")
    experiment: str = Field(min_length=1, description="the experiment's name")
    seed: int = Field(42, description="the random seed (default 42)")
    deterministic: bool = Field(False, description="true: deterministic algorithms only "
                                                   "(torch, cuDNN, cuBLAS) during the run "
                                                   "(default false)")
    device: str = Field("auto", description="cpu, cuda, cuda:N, mps or auto (default)")
    lints: dict[str, Level] | None = Field(None, description=_LINTS)
    fast_path: bool = Field(True, description="false: no stage uses the batch fast path for "
                                              "in-memory loaders (default true)")
    compile: Compile | None = Field(
        None, description=_COMPILE + "; for every stage that does not say")
    model: Target | None = _component(_MODEL)
    criterion: Target | None = _component(_CRITERION)
    optimizer: OptimizerTarget | None = _component(_OPTIMIZER)
    scheduler: Target | None = _component(_SCHEDULER)
    handler: Target | None = _component(_HANDLER + " (default: the supervised handler)")
    loaders: Loaders | None = _component(_LOADERS + "; used by every stage that has none")
    defaults: Defaults | None = Field(None, description="stage settings merged into every stage "
                                                        "(a stage's own keys win)")
    stages: dict[str, Stage | None] = Field(
        min_length=1, description="the stages by name, in the order they run (unless after: "
                                  "says otherwise)")


#: The stage parameters ``Experiment.add_stage`` takes as values (not components).
STAGE_PARAMS = ("num_epochs", "main_metric", "minimize_metric", "valid_loader",
                "migrate_from_previous_stage", "check_run", "precision", "batch_keys",
                "fast_path", "compile")
#: The components a config names by `_target_`.
COMPONENT_KEYS = ("model", "criterion", "optimizer", "scheduler")
#: The optimizer options that stagegraph handles itself (`stagegraph.runtime.optim`).
OPTIMIZER_OPTIONS = tuple(k for k in OptimizerTarget.model_fields if k != "target")
