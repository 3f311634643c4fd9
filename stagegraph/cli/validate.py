"""`stagegraph validate` (diagnostics as text or JSON, ``--strict``, ``--explain CODE``) and the
report of warnings and notes that `stagegraph run` prints before training.

Everything said about a code (its summary, default level, fix, whether it may be changed) comes
from the rule registry, `stagegraph.compiler.rules`.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, TextIO

from stagegraph.cli.options import EXP_HELP, add_set_option, compile_exp, compile_options
from stagegraph.compiler import Diagnostic, ExecutionPlan, Severity
from stagegraph.compiler.rules import LEVELS, RULES, Rule, closest_code
from stagegraph.config import ConfigExperiment, LocatedDiagnostic, locate
from stagegraph.loading import LoadProblem

LOGDIR_HELP = ("the log directory the run will use: checks the run's file-writing callbacks "
               "against it, and adds the checkpoint and CSV callbacks `run --logdir` adds")
WIDTH = 100


def add_parser(sub: Any) -> None:
    """The ``validate`` subcommand; EXP is optional because ``--explain CODE`` needs none."""
    validate = sub.add_parser(
        "validate", parents=[compile_options(LOGDIR_HELP)],
        help="print every diagnostic; exit 1 on errors",
        description="Print every diagnostic of EXP at once, and a summary; exit 1 on errors.")
    validate.add_argument("exp", metavar="EXP", nargs="?",
                          help=EXP_HELP)
    validate.add_argument("--traceback", action="store_true",
                          help="show Python tracebacks for failures")
    add_set_option(validate)
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.add_argument("--strict", action="store_true",
                          help="count warnings as errors: exit 1 if there is any")
    validate.add_argument("--explain", metavar="CODE",
                          help="print what diagnostic CODE (such as SF301) means, its default "
                               "level, how to fix it and how to change its level; no EXP")
    validate.set_defaults(command=cmd_validate, usage_error=validate.error,
                          errors_to_stdout=True)


def cmd_validate(args: argparse.Namespace) -> int:
    validate_args(args)
    if args.explain is not None:
        return explain_code(args)
    notes: list[LoadProblem] = []
    plan = compile_exp(args, notes=notes)
    return print_validation(plan, json_format=args.format == "json", strict=args.strict,
                            notes=notes)


def validate_args(args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see: EXP is required, except with ``--explain``."""
    if args.explain is not None and args.exp is not None:
        args.usage_error(f"--explain {args.explain} takes no EXP")
    if args.explain is None and args.exp is None:
        args.usage_error("the following arguments are required: EXP")


def print_validation(plan: ExecutionPlan, *, json_format: bool, strict: bool,
                     notes: Sequence[LoadProblem] = ()) -> int:
    """Print the warnings about loading the file (``notes``), ``plan``'s diagnostics and the
    summary; the exit code (1 on errors, or warnings if ``strict``)."""
    if json_format:
        items = [n.to_json() for n in notes] + [diagnostic_json(d) for d in located(plan)]
        print(json.dumps(items, indent=2))
    else:
        for item in [*notes, *located(plan)]:
            print(item)
        print(summary(plan, strict=strict, load_warnings=len(notes)))
    return 1 if plan.errors or (strict and (plan.warnings or notes)) else 0


def located(plan: ExecutionPlan) -> list[Diagnostic | LocatedDiagnostic]:
    """The plan's diagnostics; for an experiment from a config file, each with the file, line
    and column it is about."""
    experiment = plan.experiment_object
    if isinstance(experiment, ConfigExperiment):
        return list(locate(plan.diagnostics, experiment.document))
    return list(plan.diagnostics)


def diagnostic_json(diagnostic: Diagnostic | LocatedDiagnostic) -> dict[str, Any]:
    """A diagnostic as in the plan format, plus its code's ``default_level`` (and ``file``,
    ``line``, ``column`` for one about a config file)."""
    if isinstance(diagnostic, LocatedDiagnostic):
        return diagnostic.to_json()
    rule = RULES.get(diagnostic.code)
    return {**diagnostic.model_dump(mode="json"),
            "default_level": rule.default if rule is not None else None}


def summary(plan: ExecutionPlan, *, strict: bool = False, load_warnings: int = 0) -> str:
    """``experiment 'x' has errors: 2 error(s), 1 warning(s) (...)`` or an ``ok`` line;
    ``load_warnings`` counts the warnings about loading the file, which are not in the plan."""
    callbacks = sum(len(s.callbacks) for s in plan.stages)
    size = f"{len(plan.stages)} stage(s), {callbacks} callback(s)"
    if not plan.diagnostics and not load_warnings:
        return f"ok: experiment {plan.experiment!r} has no problems ({size})"
    warnings = len(plan.warnings) + load_warnings
    counts = f"{len(plan.errors)} error(s), {warnings} warning(s)"
    notes = sum(d.severity is Severity.info for d in plan.diagnostics)
    if notes:
        counts += f", {notes} note(s)"
    if plan.errors:
        verdict = "has errors"
    elif strict and warnings:
        verdict = "fails --strict, which counts warnings as errors"
    else:
        verdict = "is valid"
    return f"experiment {plan.experiment!r} {verdict}: {counts} ({size})"


def report_before_run(plan: ExecutionPlan, stream: TextIO | None = None,
                      notes: Sequence[LoadProblem] = ()) -> None:
    """Print the warnings about loading the file (``notes``), every warning and note of a plan
    about to run, and the summary, on ``stream``."""
    if not plan.diagnostics and not notes:
        return
    stream = stream or sys.stderr
    for item in [*notes, *located(plan)]:
        print(item, file=stream)
    print(f"running: {summary(plan, load_warnings=len(notes))}", file=stream)


# --- validate --explain CODE -----------------------------------------------------------------
def find_rule(text: str) -> Rule | None:
    """The rule ``text`` names: ``SF301``, ``sf301`` or ``301``; ``None`` when there is none."""
    code = text.strip().upper()
    if code.isdigit() and len(code) <= 3:
        code = "SF" + code.zfill(3)
    return RULES.get(code)


def unknown_code(text: str) -> str:
    """The usage error for an unknown code, with a did-you-mean among the real codes."""
    guess = closest_code(text)
    return (f"--explain: no diagnostic code {text!r}." + (f" Did you mean {guess!r}?" if guess
                                                            else "")
            + f" Codes run from {min(RULES)} to {max(RULES)}; docs/diagnostics.md lists them")


def explain_code(args: argparse.Namespace) -> int:
    """``validate --explain CODE``: print the code's documentation; an unknown code is a usage
    error (exit 2)."""
    rule = find_rule(args.explain)
    if rule is None:
        args.usage_error(unknown_code(args.explain))
        return 2  # usage_error exits; this is for a caller that replaced it
    print(json.dumps(rule_json(rule), indent=2) if args.format == "json" else explain_rule(rule))
    return 0


def explain_rule(rule: Rule) -> str:
    """What ``stagegraph validate --explain CODE`` prints."""
    if rule.fixed:
        level = f"{rule.default}; fixed, because {rule.why_fixed}"
    else:
        level = f"{rule.default} by default; it can be changed"
    lines = [f"{rule.code}: {rule.summary}", "",
             _field("level", level), _field("found by", rule.group), _field("fix", rule.fix), ""]
    if rule.fixed:
        lines.append("Its level cannot be changed: a lints setting naming it is an error "
                     "(SF111).")
    else:
        setting = f"lints={{{rule.code!r}: 'allow'}}"
        lines += [f"Change its level ({', '.join(LEVELS)}) where it applies; the most specific "
                  "setting wins:",
                  f"  a callback:      MyCallback(..., {setting})",
                  f"  a stage:         experiment.add_stage('train', ..., {setting})",
                  f"  the experiment:  stagegraph.Experiment('name', ..., {setting})"]
    lines.append(f"Documented with an example: docs/diagnostics.md#{rule.code.lower()}")
    return "\n".join(lines)


def rule_json(rule: Rule) -> dict[str, Any]:
    return {"code": rule.code, "summary": rule.summary, "default_level": rule.default,
            "fixed": rule.fixed, "fix": rule.fix, "group": rule.group}


def _field(name: str, text: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=f"  {name + ':':<10}",
                         subsequent_indent=" " * 12)
