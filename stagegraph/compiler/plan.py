"""The execution plan: frozen, serialisable data the runtime interprets and tools display.

The plan names live objects (callback instances, models, loaders) but never holds them, so it
round-trips through JSON. A plan made by :func:`stagegraph.compile` remembers the experiment it
came from (a private attribute, not serialised), which is how ``Runner(plan)`` finds the objects.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr

from stagegraph.compiler import display
from stagegraph.compiler.diagnostics import Diagnostic, DiagnosticList, Frozen, Severity
from stagegraph.graph.enums import CallbackNode, CallbackScope, LoaderKind, RankKind

if TYPE_CHECKING:
    import graphviz

    from stagegraph.compiler.explain import Explanation

SCHEMA_VERSION = 1

Origin = Literal["declared", "migrated", "default"]
#: A plan's diagnostics field: a tuple, held as a `DiagnosticList` so notebooks display it.
DiagnosticField = Annotated[tuple[Diagnostic, ...], AfterValidator(DiagnosticList)]
EdgeKind = Literal["explicit", "dataflow"]


class LoaderPlan(Frozen):
    """One loader of a stage. ``fast_path``: whether the runtime may iterate it by the batch
    fast path (the stage's ``fast_path=``, per loader); whether it applies is decided at run
    time, with the live loader (`Runner.fast_path`, ``stagegraph plan --loaders``)."""

    name: str
    kind: LoaderKind
    fast_path: bool = True


class HandlerPlan(Frozen):
    """The batch step: what it is, and the keys it reads from the batch and writes."""

    type: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    declared: bool = True


class InferredAccess(Frozen):
    """A dataflow key a callback's source code reads or writes with a constant key.

    ``where`` is ``file:line`` of the access; ``event`` the method it is in. ``optional``: the
    code may do without it — it sits in a branch that may be skipped (``if``, ``try``, ``and`` /
    ``or``, a conditional expression) or is a ``.get`` — so, as a read, it orders callbacks but
    its absence is not an error. ``events``: every method whose code accesses the key this way
    (in the plan; ``event`` is the first of them).
    """

    key: str
    access: Literal["read", "write"]
    where: str
    event: str | None = None
    optional: bool = False
    events: tuple[str, ...] = ()


class MetricFlow(Frozen):
    """The metric names a stage produces at each level of the metric pipeline.

    ``batch``: batch metrics (``metric.X``); ``loader``: loader metrics (``loader_metric.X``);
    ``epoch``: epoch metrics (``epoch_metric.{loader}_X`` and the like); ``valid``: valid metrics
    (``valid_metric.X``). ``open`` lists the levels a wildcard writer makes unknowable.
    """

    batch: tuple[str, ...] = ()
    loader: tuple[str, ...] = ()
    epoch: tuple[str, ...] = ()
    valid: tuple[str, ...] = ()
    open: tuple[str, ...] = ()


class CallbackPlan(Frozen):
    """One callback of a stage, in execution order.

    ``origin`` says where it comes from: ``declared`` in this stage, ``migrated`` from
    ``source_stage`` (an experiment-scoped callback handed over along a stage edge), or
    ``default`` (added by the compiler; ``target`` and ``params`` say how the runtime builds it).
    ``declared_in`` is the stage whose ``callbacks`` hold the instance.
    """

    name: str
    type: str
    kind: str | None = None
    order: int
    node: CallbackNode
    scope: CallbackScope
    origin: Origin = "declared"
    declared_in: str
    source_stage: str | None = None
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    target: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    claims: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    watch: str | None = None
    watch_minimize: bool | None = None
    lints: dict[str, str] = Field(default_factory=dict)
    inferred: tuple[InferredAccess, ...] = ()
    shadowed_order: int | None = None


class EdgePlan(Frozen):
    """A hard ordering edge ``source`` before ``target`` and why it exists.

    ``inferred`` is the ``file:line`` of the access when the dataflow key comes from a
    callback's code rather than its declarations (the reader's, else the writer's).
    """

    source: str
    target: str
    kind: EdgeKind
    reason: str
    key: str | None = None
    inferred: str | None = None


class MigrationPlan(Frozen):
    """Experiment-scoped callbacks handed from ``source`` to ``target``."""

    source: str
    target: str
    callbacks: tuple[str, ...]


class CompilePlan(Frozen):
    """A stage's ``compile=``: the `torch.compile` options its model and criterion get.

    ``backend`` is the backend's name (a callable backend by its qualified name; the runtime
    takes the callable from the experiment).
    """

    backend: str = "inductor"
    mode: str | None = None
    fullgraph: bool = False
    dynamic: bool | None = None
    options: dict[str, Any] | None = None


class StagePlan(Frozen):
    name: str
    index: int
    after: tuple[str, ...] = ()
    is_infer: bool = False
    num_epochs: int = 1
    main_metric: str = "loss"
    minimize_metric: bool = True
    valid_loader: str = "valid"
    migrate_from_previous_stage: bool = True
    check_run: bool = False
    precision: Literal["fp32", "amp", "bf16"] = "fp32"
    batch_keys: tuple[str, ...] | None = None
    #: Whether the runtime may iterate in-memory loaders without their DataLoader (the batch
    #: fast path): the stage's ``fast_path`` when a bool, the experiment's when the stage gives
    #: a mapping per loader (``LoaderPlan.fast_path`` holds each loader's setting); per loader
    #: it decides at run time whether the fast path applies (`Runner.fast_path`).
    fast_path: bool = True
    compile: CompilePlan | None = None
    loaders: tuple[LoaderPlan, ...] = ()
    components: dict[str, Literal["stage", "experiment"]] = Field(default_factory=dict)
    handler: HandlerPlan
    callbacks: tuple[CallbackPlan, ...] = ()
    dispatch: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    edges: tuple[EdgePlan, ...] = ()
    inversions: tuple[EdgePlan, ...] = ()
    migrations: tuple[MigrationPlan, ...] = ()
    metrics: MetricFlow = MetricFlow()
    lints: dict[str, str] = Field(default_factory=dict)

    def callback(self, name: str) -> CallbackPlan:
        for cb in self.callbacks:
            if cb.name == name:
                return cb
        raise KeyError(f"stage {self.name!r} has no callback {name!r}")

    def _repr_markdown_(self) -> str:
        return display.stage_markdown(self)

    def _repr_html_(self) -> str:
        return display.stage_html(self)


class StageEdge(Frozen):
    source: str
    target: str


class ExecutionPlan(Frozen):
    """What `stagegraph.compile` produces. ``ok`` is false when any diagnostic is an error."""

    schema_version: int = SCHEMA_VERSION
    experiment: str
    seed: int
    deterministic: bool = False
    device: str = "auto"
    rank: RankKind = RankKind.single
    logdir: str | None = None
    verbose: bool = True
    stages: tuple[StagePlan, ...] = ()
    stage_edges: tuple[StageEdge, ...] = ()
    lints: dict[str, str] = Field(default_factory=dict)
    diagnostics: DiagnosticField = Field(default=(), validate_default=True)
    hash: str = ""

    _experiment: Any = PrivateAttr(default=None)

    # --- derived views ------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> DiagnosticList:
        return DiagnosticList(d for d in self.diagnostics if d.severity is Severity.error)

    @property
    def warnings(self) -> DiagnosticList:
        return DiagnosticList(d for d in self.diagnostics if d.severity is Severity.warning)

    @property
    def experiment_object(self) -> Any:
        """The `Experiment` this plan was compiled from, or ``None`` for a plan read from JSON."""
        return self._experiment

    def stage(self, name: str) -> StagePlan:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(repr(s.name) for s in self.stages)
        raise KeyError(f"plan has no stage {name!r}; stages: {known}")

    def __eq__(self, other: object) -> bool:
        """Plans are equal when their content is: the bound experiment does not count."""
        if not isinstance(other, ExecutionPlan):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(self.hash)

    # --- emitters -----------------------------------------------------------------------------
    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    def to_graphviz(self, *, detail: Literal["compact", "full"] = "compact",
                    stage: str | None = None) -> graphviz.Digraph:
        """The drawing (`stagegraph.compiler.render.to_graphviz`): compact or full detail,
        every stage or one."""
        from stagegraph.compiler.render import to_graphviz

        return to_graphviz(self, detail=detail, stage=stage)

    def explain(self, stage: str, first: str, second: str) -> Explanation:
        from stagegraph.compiler.explain import explain

        return explain(self, stage, first, second)

    def __str__(self) -> str:
        from stagegraph.compiler.text import plan_to_text

        return plan_to_text(self)

    def _repr_markdown_(self) -> str:
        return display.plan_markdown(self)

    def _repr_html_(self) -> str:
        return display.plan_html(self, _svg(self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """Jupyter shows a summary (stages, callbacks in order, diagnostics) and the diagram.

        The HTML form holds the diagram as SVG where ``dot`` is installed; ``image/svg+xml`` is
        the diagram alone, ``text/markdown`` the summary and ``text/plain`` the text form.
        """
        def wanted(mime: str) -> bool:
            return (not include or mime in include) and not (exclude and mime in exclude)

        svg = _svg(self) if wanted("text/html") or wanted("image/svg+xml") else None
        bundle = {"text/plain": str(self), "text/markdown": display.plan_markdown(self),
                  "text/html": display.plan_html(self, svg), "image/svg+xml": svg}
        return {mime: data for mime, data in bundle.items() if data is not None and wanted(mime)}


def _svg(plan: ExecutionPlan) -> str | None:
    """The plan drawn as SVG, or ``None`` when graphviz's ``dot`` is not installed."""
    import graphviz

    try:
        return plan.to_graphviz().pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        return None


def content_hash(plan: ExecutionPlan) -> str:
    """A stable sha256 of everything in the plan but the hash itself."""
    data = plan.model_dump(mode="json", exclude={"hash"})
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_hash(plan: ExecutionPlan) -> ExecutionPlan:
    """The plan with its ``hash`` filled in (the private experiment binding is kept)."""
    hashed = plan.model_copy(update={"hash": content_hash(plan)})
    hashed._experiment = plan._experiment
    return hashed
