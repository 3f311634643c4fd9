"""The authoring model: an `Experiment` holds stages, their loaders, callbacks and components.

Authoring never raises for a mistake in values: everything is stored as given and the compiler
reports all problems together. Only misuse that Python itself cannot express otherwise (a stage
name that is not a string) is refused at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stagegraph.graph.handler import SupervisedHandler

#: The stage parameters and their defaults (the seed runner's names).
STAGE_DEFAULTS: dict[str, Any] = {
    "num_epochs": 1,
    "main_metric": "loss",
    "minimize_metric": True,
    "valid_loader": "valid",
    "migrate_from_previous_stage": True,
    "check_run": False,
    "precision": "fp32",
    "batch_keys": None,
    "fast_path": True,
    "compile": None,
}

COMPONENTS = ("model", "criterion", "optimizer", "scheduler")

_UNSET: Any = object()


@dataclass
class StageDef:
    """One stage as the user declared it; values are raw until the compiler's schema pass."""

    name: str
    index: int
    after: Any
    params: dict[str, Any]
    loaders: Any
    callbacks: Any
    components: dict[str, Any]
    handler: Any
    unknown: dict[str, Any] = field(default_factory=dict)
    lints: Any = None


class Experiment:
    """A multi-stage training experiment.

    >>> exp = Experiment("demo", seed=1)
    >>> exp.add_stage("train", num_epochs=2, loaders={"train": [], "valid": []})
    'train'
    >>> [s.name for s in exp.stages]
    ['train']
    """

    def __init__(
        self,
        name: str = "experiment",
        *,
        seed: int = 42,
        model: Any = None,
        criterion: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        handler: Any = None,
        device: str = "auto",
        lints: Mapping[str, str] | None = None,
        fast_path: Any = True,
        compile: Any = False,
        deterministic: Any = False,
    ) -> None:
        self.name = name
        #: ``True``: the run uses deterministic algorithms only (torch, cuDNN, cuBLAS; see
        #: "Deterministic runs" in docs/runtime.md).
        self.deterministic: Any = deterministic
        #: The default of every stage's ``fast_path`` (the batch fast path for in-memory data).
        self.fast_path: Any = fast_path
        #: `torch.compile` for every stage that does not say (``compile=`` of `add_stage`).
        self.compile = compile
        #: Diagnostic levels for the whole experiment, ``{"SF301": "allow"}`` (see lint levels).
        self.lints: Any = lints if lints is not None else {}
        self.seed = seed
        self.components: dict[str, Any] = {
            "model": model, "criterion": criterion, "optimizer": optimizer, "scheduler": scheduler,
        }
        self.handler = handler if handler is not None else SupervisedHandler()
        self.device = device
        self.stages: list[StageDef] = []
        #: The effective config file this experiment was built from (``stagegraph.config``;
        #: ``None`` for one written in Python): a run saves it beside its plan in each resume
        #: checkpoint, and ``--resume`` compares it.
        self.config: dict[str, Any] | None = None

    def add_stage(
        self,
        name: str,
        *,
        num_epochs: Any = _UNSET,
        loaders: Mapping[str, Any] | None = None,
        callbacks: Mapping[str, Any] | None = None,
        after: Sequence[str] | str | None = None,
        main_metric: Any = _UNSET,
        minimize_metric: Any = _UNSET,
        valid_loader: Any = _UNSET,
        migrate_from_previous_stage: Any = _UNSET,
        check_run: Any = _UNSET,
        precision: Any = _UNSET,
        batch_keys: Any = _UNSET,
        fast_path: Any = _UNSET,
        compile: Any = _UNSET,
        model: Any = None,
        criterion: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        handler: Any = None,
        lints: Mapping[str, str] | None = None,
        **unknown: Any,
    ) -> str:
        """Declare a stage; returns its name.

        ``after`` names the stages this one follows (default: the previously added stage).
        Components given here (model, criterion, optimizer, scheduler, handler) override the
        experiment's for this stage; each may be an object or a factory the runtime calls.
        ``lints`` sets diagnostic levels for this stage (``{"SF506": "allow"}``).
        ``fast_path=False`` iterates every loader of the stage through its DataLoader (default:
        the experiment's ``fast_path``; see "The batch fast path" in docs/runtime.md); a mapping
        ``{loader_name: bool}`` sets the loaders it names, the others take the experiment's.
        ``compile=True`` (or a dict of `torch.compile` options) compiles the stage's model and
        criterion once at stage start; unset or ``None``: the experiment's ``compile``.
        """
        given = {
            "num_epochs": num_epochs, "main_metric": main_metric,
            "minimize_metric": minimize_metric, "valid_loader": valid_loader,
            "migrate_from_previous_stage": migrate_from_previous_stage,
            "check_run": check_run, "precision": precision, "batch_keys": batch_keys,
            "fast_path": self.fast_path if fast_path is _UNSET else fast_path,
            "compile": compile,
        }
        params = {k: (STAGE_DEFAULTS[k] if v is _UNSET else v) for k, v in given.items()}
        if after is None:
            after = [self.stages[-1].name] if self.stages else []
        elif isinstance(after, str):
            after = [after]
        self.stages.append(
            StageDef(
                name=name,
                index=len(self.stages),
                after=after,
                params=params,
                loaders=loaders if loaders is not None else {},
                callbacks=callbacks if callbacks is not None else {},
                components={"model": model, "criterion": criterion,
                            "optimizer": optimizer, "scheduler": scheduler},
                handler=handler,
                unknown=dict(unknown),
                lints=lints if lints is not None else {},
            )
        )
        return name

    def stage(self, name: str) -> StageDef:
        """The first stage declared under ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"experiment {self.name!r} has no stage {name!r}")

    def component(self, stage: StageDef, name: str) -> Any:
        """The stage's own component ``name``, else the experiment's."""
        own = stage.components.get(name)
        return own if own is not None else self.components.get(name)

    def stage_handler(self, stage: StageDef) -> Any:
        return stage.handler if stage.handler is not None else self.handler

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, stages={[s.name for s in self.stages]})"
