"""Options shared by the commands, their value parsers, and loading and compiling EXP."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from stagegraph.compiler import ExecutionPlan, compile
from stagegraph.graph.enums import RankKind
from stagegraph.loading import LoadProblem, load_experiment, shadowing, split_spec

DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (default: the experiment's device, else auto)"
EXP_HELP = ("path/to/file.py or path/to/file.py:NAME, or a config file path/to/exp.yaml "
            "(.yml, .json)")
SET_HELP = ("change a value of a config file: --set stages.train.num_epochs=5 (VALUE is YAML; "
            "repeatable)")


def common_options() -> argparse.ArgumentParser:
    """EXP and ``--traceback``, which every command that loads an experiment takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("exp", metavar="EXP", help=EXP_HELP)
    common.add_argument("--traceback", action="store_true",
                        help="show Python tracebacks for failures")
    add_set_option(common)
    return common


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set PATH=VALUE``, repeatable: overrides for a config file."""
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        dest="overrides", help=SET_HELP)


def compile_options(logdir_help: str = "a log directory (adds checkpoint and CSV callbacks)"
                    ) -> argparse.ArgumentParser:
    """What a plan is compiled for: the rank kind, the device and the logdir."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--rank", choices=[r.value for r in RankKind], default="single",
                         help="the process to plan for (default: single)")
    options.add_argument("--device", help=DEVICE_HELP)
    options.add_argument("--logdir", metavar="DIR", help=logdir_help)
    return options


def positive_int(flag: str, what: str) -> Any:
    """An argparse type: an integer >= 1, else a usage error naming ``flag`` and ``what``."""
    def parse(value: str) -> int:
        if not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"{flag} {value!r}: give a number of {what} >= 1")
        return int(value)
    return parse


def seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return number


def compile_exp(args: argparse.Namespace, *, notes: list[LoadProblem] | None = None,
                static: bool = True, **options: Any) -> ExecutionPlan:
    """Load EXP and compile it. What EXP prints while it loads goes to stderr, so that stdout
    carries only the command's output (``validate --format json`` stays JSON). The warnings
    about loading it (SF007, a config file's SF814) go to ``notes``, else are printed on stderr.
    ``static``: a config file's own callbacks are read from source, not imported (all but run).
    """
    with contextlib.redirect_stdout(sys.stderr):
        experiment = load_experiment(args.exp, overrides=getattr(args, "overrides", []),
                                     static=static)
    found = [*shadowing(split_spec(args.exp)[0]), *getattr(experiment, "notes", [])]
    if notes is None:
        for note in found:
            print(note, file=sys.stderr)
    else:
        notes.extend(found)
    options.setdefault("rank", getattr(args, "rank", "single"))
    return compile(experiment, device=args.device, logdir=args.logdir, **options)
