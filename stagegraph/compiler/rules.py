"""The rule registry: every diagnostic code, its default level and whether a user may change it.

Each code is one entry. The docs page (docs/diagnostics.md), ``stagegraph validate --explain CODE``
and the table of levels are all read from here, so none of them can drift from what the compiler
reports. A ``fixed`` rule describes a plan that cannot run at all (a malformed value, a cycle): its
level cannot be lowered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["error", "warning", "info", "allow"]
LEVELS: tuple[str, ...] = ("error", "warning", "info", "allow")


@dataclass(frozen=True)
class Rule:
    """One diagnostic code: ``default`` level, a one-line ``summary``, and whether it is fixed."""

    code: str
    default: Level
    summary: str
    fixed: bool = False


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.code: rule for rule in rules}


RULES: dict[str, Rule] = _rules(
    # Loading an experiment file.
    Rule("SF001", "error", "the experiment file does not exist or is not a file", fixed=True),
    Rule("SF002", "error", "the experiment file is not a Python file", fixed=True),
    Rule("SF003", "error", "the experiment file does not import", fixed=True),
    Rule("SF004", "error", "the file defines no experiment", fixed=True),
    Rule("SF005", "error", "the experiment object or factory is not usable", fixed=True),
    Rule("SF006", "error", "the experiment factory failed", fixed=True),
    # The schema.
    Rule("SF100", "error", "compile() was not given an Experiment", fixed=True),
    Rule("SF101", "error", "a stage parameter has an invalid value", fixed=True),
    Rule("SF102", "error", "an unknown stage parameter", fixed=True),
    Rule("SF103", "error", "two stages share a name", fixed=True),
    Rule("SF104", "error", "the experiment has no stages", fixed=True),
    Rule("SF105", "error", "a callback is not a stagegraph Callback instance", fixed=True),
    Rule("SF106", "error", "a callback declaration or key is malformed", fixed=True),
    Rule("SF107", "error", "a method named like an event is not one (a misspelt event)"),
    Rule("SF108", "error", "an invalid name or device", fixed=True),
    Rule("SF109", "error", "the experiment's name or seed is invalid", fixed=True),
    Rule("SF110", "error", "a factory cannot be called with the arguments the runtime passes",
         fixed=True),
    Rule("SF111", "error", "a lint level setting names an unknown code or level", fixed=True),
    # The stage graph.
    Rule("SF201", "error", "a stage follows an unknown stage", fixed=True),
    Rule("SF202", "error", "the stages form a cycle", fixed=True),
    # Migration.
    Rule("SF301", "error", "a migrating callback shadows a differently configured declared one"),
    Rule("SF302", "error", "two predecessors hand over different callbacks under one name",
         fixed=True),
    Rule("SF303", "warning", "a migrating callback shadows an identically configured declared one"),
    # Callback order.
    Rule("SF401", "error", "after/before names no callback of the stage", fixed=True),
    Rule("SF402", "error", "callbacks form a cycle", fixed=True),
    # Checks before running.
    Rule("SF501", "error", "a key is read that nothing in the stage writes"),
    Rule("SF502", "warning", "a key is read whose source cannot be known before the run"),
    Rule("SF503", "error", "main_metric is not a valid metric of the stage"),
    Rule("SF504", "error", "the valid_loader is not among the stage's loaders"),
    Rule("SF505", "error", "an inference stage has a training loader"),
    Rule("SF506", "warning", "a loader name has none of the known prefixes"),
    Rule("SF507", "error", "a stage has no loaders"),
    Rule("SF509", "error", "the supervised handler has no model"),
    Rule("SF510", "error", "a callback writes files and the run has no logdir"),
    Rule("SF511", "error", "a training stage has no train* loader, so it trains nothing"),
    Rule("SF512", "error", "a training stage has no optimizer"),
    Rule("SF513", "error", "a training stage has no criterion (nothing writes its loss)"),
    Rule("SF514", "error", "a scheduler in a stage without an optimizer"),
    Rule("SF515", "error", "two callbacks of one stage claim the same exclusive resource"),
    Rule("SF516", "error", "a metric's direction contradicts minimize_metric / watch_minimize"),
    Rule("SF517", "warning", "a callback's code accesses a key its declarations contradict"),
    # Resuming a run.
    Rule("SF601", "error", "the plan changed since the checkpoint was written", fixed=True),
    Rule("SF602", "warning", "a damaged checkpoint was skipped", fixed=True),
    Rule("SF603", "error", "the resume path is not usable", fixed=True),
    Rule("SF604", "error", "there is no checkpoint to resume from", fixed=True),
    Rule("SF605", "error", "a checkpoint could not be loaded", fixed=True),
)


def rule(code: str) -> Rule:
    """The rule for ``code``; ``KeyError`` with the known codes when there is none."""
    try:
        return RULES[code]
    except KeyError:
        raise KeyError(f"no diagnostic code {code!r}; codes: {', '.join(RULES)}") from None
