"""The `stagegraph` command's entry point: the parser of every command, and the handling of what
any command may end with (a load error, an interrupt, a closed pipe, a bug)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence

import stagegraph
from stagegraph.cli import convert, explain, plan, run, schema, validate
from stagegraph.loading import LoadError

COMMANDS = (validate, plan, explain, run, schema, convert)


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
        return err.exit_code
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stagegraph",
        description="Compile, check, draw and run multi-stage PyTorch experiments.",
        epilog="EXP is path/to/file.py (its `experiment`), path/to/file.py:NAME, or a config "
               "file path/to/exp.yaml (.yml, .json).")
    parser.add_argument("--version", action="version",
                        version=f"stagegraph {stagegraph.__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def _report_load_error(err: LoadError, args: argparse.Namespace) -> None:
    if getattr(args, "format", "text") == "json":
        print(json.dumps([problem.to_json() for problem in err.problems], indent=2))
        return
    stream = sys.stdout if getattr(args, "errors_to_stdout", False) else sys.stderr
    for problem in err.problems:
        print(problem, file=stream)
    if args.traceback and err.__cause__ is not None:
        traceback.print_exception(err.__cause__)
    print(f"could not load {args.exp!r}", file=stream)
