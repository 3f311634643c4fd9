"""The compiler: turns an `Experiment` into an `ExecutionPlan` with diagnostics. No torch here."""

from stagegraph.compiler.diagnostics import Diagnostic, Location, Severity
from stagegraph.compiler.explain import Explanation, explain
from stagegraph.compiler.pipeline import compile
from stagegraph.compiler.plan import (
    CallbackPlan,
    CompilePlan,
    EdgePlan,
    ExecutionPlan,
    HandlerPlan,
    LoaderPlan,
    MigrationPlan,
    StageEdge,
    StagePlan,
)
from stagegraph.compiler.verify import verify

__all__ = [
    "CallbackPlan",
    "CompilePlan",
    "Diagnostic",
    "EdgePlan",
    "ExecutionPlan",
    "Explanation",
    "HandlerPlan",
    "LoaderPlan",
    "Location",
    "MigrationPlan",
    "Severity",
    "StageEdge",
    "StagePlan",
    "compile",
    "explain",
    "verify",
]
