"""The `stagegraph` command: validate, plan, explain, run and schema.

Exit codes: 0 success; 1 the experiment has errors, could not be loaded, or the run failed;
2 usage error; 75 the run stopped on SIGTERM or SIGUSR1 (after writing a resume checkpoint);
130 interrupted; 141 the output pipe closed early. ``validate`` and ``plan``
never import torch; ``run`` imports the runtime only when it starts. ``validate``'s output and
``--explain`` live in `stagegraph.cli_validate`, running a plan in `stagegraph.cli_run`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import stagegraph
from stagegraph import launch
from stagegraph.cli_run import run_plan
from stagegraph.cli_validate import (
    LOGDIR_HELP,
    add_validate_parser,
    explain_code,
    print_validation,
    report_before_run,
    summary,
    validate_args,
)
from stagegraph.compiler import ExecutionPlan, compile
from stagegraph.graph.enums import RankKind
from stagegraph.loading import LoadError, LoadProblem, load_experiment, shadowing, split_spec

OUTPUT_SUFFIXES = (".svg", ".png", ".dot", ".gv", ".json")
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (default: the experiment's device, else auto)"
GRAPHVIZ_HINT = ("install Graphviz, which provides the `dot` binary (Debian/Ubuntu: "
                 "`apt-get install graphviz`, macOS: `brew install graphviz`), or write "
                 "plan.dot / plan.json instead")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    _tolerate_any_encoding()
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        code = command(args)
        sys.stdout.flush()  # inside the try, so a closed pipe is caught here
        return code
    except KeyboardInterrupt:
        print("stagegraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `stagegraph plan EXP | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except LoadError as err:
        _report_load_error(err, args)
        return 1
    except Exception as err:  # a bug in stagegraph: say so, without a traceback by default
        if args.traceback:
            traceback.print_exc()
        print(f"stagegraph: internal error: {type(err).__name__}: {err}\n"
              "  hint: this is a bug in stagegraph; rerun with --traceback and report it",
              file=sys.stderr)
        return 1


def _tolerate_any_encoding() -> None:
    """Write what the terminal's encoding cannot show as escapes (``\\xe9``), not fail with a
    UnicodeEncodeError (``PYTHONIOENCODING=ascii``, ``LC_ALL=C`` without UTF-8 mode)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


# --- the parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stagegraph",
        description="Compile, check, draw and run multi-stage PyTorch experiments.",
        epilog="EXP is path/to/file.py (its `experiment`) or path/to/file.py:NAME.")
    parser.add_argument("--version", action="version",
                        version=f"stagegraph {stagegraph.__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    common = _common_options()
    compile_opts = _compile_options()

    add_validate_parser(sub, _compile_options(LOGDIR_HELP), cmd_validate)

    plan = sub.add_parser("plan", parents=[common, compile_opts],
                          help="print the plan, or write it as SVG, PNG, DOT or JSON")
    plan.add_argument("-o", "--output", type=_output_path, metavar="FILE",
                      help="write to FILE by its suffix: " + ", ".join(OUTPUT_SUFFIXES))
    plan.set_defaults(command=cmd_plan)

    explain = sub.add_parser("explain", parents=[common, compile_opts],
                             help="why callback A runs before or after B in a stage")
    explain.add_argument("--stage", required=True, help="the stage to look in")
    explain.add_argument("first", metavar="A")
    explain.add_argument("second", metavar="B")
    explain.set_defaults(command=cmd_explain)

    run = sub.add_parser("run", parents=[common], help="compile and run the experiment")
    run.add_argument("--device", help=DEVICE_HELP)
    run.add_argument("--logdir", help="where checkpoints and logs go")
    run.add_argument("--check", action="store_true",
                     help="check run: a few batches per loader and epochs per stage")
    run.add_argument("--quiet", action="store_true", help="no console logging")
    run.add_argument("--ddp", type=_process_count, metavar="N",
                     help="distributed data parallel on N local processes (starts torchrun)")
    run.add_argument("--max-restarts", type=_restart_count, metavar="N", default=0,
                     help="with --ddp: when a process fails, torchrun restarts them all, up to N "
                          "times, and they resume from the latest checkpoint")
    run.add_argument("--dist-timeout", type=_seconds, metavar="SECONDS",
                     help="how long a rank waits for the others in a distributed run "
                          "(default 600; sets STAGEGRAPH_DIST_TIMEOUT)")
    _resume_options(run)
    run.set_defaults(command=cmd_run)

    schema = sub.add_parser("schema", help="print the JSON Schema of the plan format")
    schema.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    schema.set_defaults(command=cmd_schema)
    return parser


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("exp", metavar="EXP", help="path/to/file.py or path/to/file.py:NAME")
    common.add_argument("--traceback", action="store_true",
                        help="show Python tracebacks for failures")
    return common


def _compile_options(logdir_help: str = "a log directory (adds checkpoint and CSV callbacks)"
                     ) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--rank", choices=[r.value for r in RankKind], default="single",
                         help="the process to plan for (default: single)")
    options.add_argument("--device", help=DEVICE_HELP)
    options.add_argument("--logdir", metavar="DIR", help=logdir_help)
    return options


def _resume_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                     help="continue from the latest complete checkpoint in the logdir, or from "
                          "PATH (a logdir or a checkpoints/resume/epoch-NNNNNN.pth file)")
    run.add_argument("--allow-plan-change", action="store_true",
                     help="with --resume: resume even if the plan changed since the checkpoint "
                          "(each change is named)")
    run.add_argument("--overwrite", action="store_true",
                     help="start over in a logdir holding an unfinished run: the old run is "
                          "moved aside, and deleted once the new run's first checkpoint is saved")
    run.add_argument("--checkpoint-every", type=_batch_count, metavar="N",
                     help="also write a resume checkpoint after every N batches of a train "
                          "loader, to resume mid-epoch (needs --logdir)")


def _batch_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--checkpoint-every {value!r}: give a number of "
                                         "batches >= 1")
    return int(value)


def _process_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"--ddp {value!r}: give a number of processes >= 1")
    return int(value)


def _restart_count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"--max-restarts {value!r}: give a number of restarts "
                                         ">= 0")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def _output_path(value: str) -> Path:
    path = Path(value)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"cannot write {value!r}: use a file ending in {', '.join(OUTPUT_SUFFIXES)}")
    return path


# --- commands --------------------------------------------------------------------------------
def _compile(args: argparse.Namespace, *, notes: list[LoadProblem] | None = None,
             **options: Any) -> ExecutionPlan:
    """Load EXP and compile it. What EXP prints while it loads goes to stderr, so that stdout
    carries only the command's output (``validate --format json`` stays JSON). The warnings
    about loading it (SF007) go to ``notes``, else are printed on stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        experiment = load_experiment(args.exp)
    found = shadowing(split_spec(args.exp)[0])
    if notes is None:
        for note in found:
            print(note, file=sys.stderr)
    else:
        notes.extend(found)
    options.setdefault("rank", getattr(args, "rank", "single"))
    return compile(experiment, device=args.device, logdir=args.logdir, **options)


def cmd_validate(args: argparse.Namespace) -> int:
    validate_args(args)
    if args.explain is not None:
        return explain_code(args)
    notes: list[LoadProblem] = []
    plan = _compile(args, notes=notes)
    return print_validation(plan, json_format=args.format == "json", strict=args.strict,
                            notes=notes)


def cmd_plan(args: argparse.Namespace) -> int:
    plan = _compile(args)
    if args.output is None:
        print(plan)
        return 0 if plan.ok else 1
    try:
        write_plan(plan, args.output)
    except OSError as err:
        print(f"error: cannot write {str(args.output)!r}: {err.strerror or err}",
              file=sys.stderr)
        return 1
    except MissingDot as err:
        print(f"error: {err}\n  hint: {GRAPHVIZ_HINT}", file=sys.stderr)
        return 1
    for diagnostic in plan.diagnostics:
        print(diagnostic, file=sys.stderr)
    print(f"wrote {args.output}; {summary(plan)}")
    return 0 if plan.ok else 1


class MissingDot(Exception):
    """The Graphviz `dot` binary is needed to draw SVG or PNG and is not installed."""


def write_plan(plan: ExecutionPlan, path: Path) -> None:
    """Write ``plan`` to ``path`` in the format its suffix names, making missing folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(plan.to_json() + "\n", encoding="utf-8")
        return
    graph = plan.to_graphviz()
    if suffix in (".dot", ".gv"):
        path.write_text(graph.source, encoding="utf-8")
        return
    import graphviz

    try:
        data = graph.pipe(format=suffix[1:])
    except graphviz.ExecutableNotFound:
        raise MissingDot(f"cannot draw {path.name}: the Graphviz `dot` binary was not found "
                         "on PATH") from None
    path.write_bytes(data)


def cmd_explain(args: argparse.Namespace) -> int:
    plan = _compile(args)
    answer = plan.explain(args.stage, args.first, args.second)
    print(answer)
    if plan.errors:
        print(f"note: the plan has {len(plan.errors)} error(s); see `stagegraph validate "
              f"{args.exp}`", file=sys.stderr)
    return 1 if answer.relation == "unknown" else 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(ExecutionPlan.model_json_schema(), indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.checkpoint_every is not None and args.logdir is None:
        print("stagegraph run: error: --checkpoint-every writes into the logdir: give --logdir DIR",
              file=sys.stderr)
        return 2
    if args.allow_plan_change and args.resume is False:
        print("stagegraph run: error: --allow-plan-change only applies with --resume",
              file=sys.stderr)
        return 2
    if args.overwrite and args.resume is True:
        print("stagegraph run: error: --overwrite starts the logdir's run over and --resume "
              "continues it: pass one of them", file=sys.stderr)
        return 2
    if args.max_restarts and args.ddp is None:
        print("stagegraph run: error: --max-restarts applies with --ddp N (under torchrun, give "
              "it to torchrun: torchrun --max-restarts N ...)", file=sys.stderr)
        return 2
    if args.dist_timeout is not None:
        os.environ[launch.TIMEOUT_VARIABLE] = f"{args.dist_timeout:g}"
    try:
        env = launch.torchrun_env()  # under torchrun: compile this rank's plan
    except launch.LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.ddp is not None and env is not None:
        print("error: --ddp starts torchrun, but this process was already started by torchrun; "
              "drop --ddp", file=sys.stderr)
        return 2
    notes: list[LoadProblem] = []
    plan = _compile(args, notes=notes, verbose=not args.quiet,
                    rank=env.kind if env else "single")
    if not plan.ok:
        for diagnostic in [*notes, *plan.diagnostics]:
            print(diagnostic, file=sys.stderr)
        print(f"not running: {summary(plan)}", file=sys.stderr)
        return 1
    # Warnings and notes, printed once: under torchrun by the master rank (whose plan they are),
    # so not by the process that `--ddp` starts torchrun from.
    if (env.kind == "master") if env is not None else args.ddp is None:
        report_before_run(plan, notes=notes)
    if args.ddp is not None:
        return launch.run_torchrun(launch.torchrun_command(
            args.ddp, launch.rank_arguments(args), max_restarts=args.max_restarts))
    return run_plan(plan, check=args.check, show_traceback=args.traceback, resume=args.resume,
                    allow_plan_change=args.allow_plan_change, overwrite=args.overwrite,
                    checkpoint_every=args.checkpoint_every)


def _report_load_error(err: LoadError, args: argparse.Namespace) -> None:
    if getattr(args, "format", "text") == "json":
        print(json.dumps([err.problem.to_json()], indent=2))
        return
    stream = sys.stdout if args.command is cmd_validate else sys.stderr
    print(err.problem, file=stream)
    if args.traceback and err.__cause__ is not None:
        traceback.print_exception(err.__cause__)
    print(f"could not load {args.exp!r}", file=stream)
