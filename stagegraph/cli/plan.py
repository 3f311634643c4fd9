"""`stagegraph plan`: print the plan, or write it as SVG, PNG, DOT or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stagegraph.cli.loaders import add_options as add_loader_options
from stagegraph.cli.loaders import cmd_loaders, recorded_lines
from stagegraph.cli.options import common_options, compile_exp, compile_options
from stagegraph.cli.validate import located, summary
from stagegraph.compiler import ExecutionPlan
from stagegraph.compiler.render import DETAILS, Detail

OUTPUT_SUFFIXES = (".svg", ".png", ".dot", ".gv", ".json")
DRAWING_SUFFIXES = (".svg", ".png", ".dot", ".gv")
GRAPHVIZ_HINT = ("install Graphviz, which provides the `dot` binary (Debian/Ubuntu: "
                 "`apt-get install graphviz`, macOS: `brew install graphviz`), or write "
                 "plan.dot / plan.json instead")


def add_parser(sub: Any) -> None:
    plan = sub.add_parser("plan", parents=[common_options(), compile_options()],
                          help="print the plan, or write it as SVG, PNG, DOT or JSON")
    plan.add_argument("-o", "--output", type=_output_path, metavar="FILE",
                      help="write to FILE by its suffix: " + ", ".join(OUTPUT_SUFFIXES))
    add_loader_options(plan)
    plan.add_argument("--stage", metavar="NAME", help="draw only this stage (.svg, .png, .dot)")
    plan.add_argument("--detail", choices=DETAILS, default="compact",
                      help="compact (default): bundled, implied edges left out; "
                           "full: every edge with every reason")
    plan.set_defaults(command=cmd_plan)


def _output_path(value: str) -> Path:
    path = Path(value)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"cannot write {value!r}: use a file ending in {', '.join(OUTPUT_SUFFIXES)}")
    return path


def cmd_plan(args: argparse.Namespace) -> int:
    drawing = args.output is not None and args.output.suffix.lower() in DRAWING_SUFFIXES
    if not drawing and (args.stage is not None or args.detail != "compact"):
        print("error: --stage and --detail shape the drawing: give -o plan.svg "
              "(or .png, .dot)", file=sys.stderr)
        return 2
    plan = compile_exp(args, static=not args.loaders)  # --loaders builds them: import mode
    if args.loaders:
        return cmd_loaders(args, plan)
    if args.output is None:
        print("\n".join([str(plan), *recorded_lines(args.logdir, plan.experiment)]))
        return 0 if plan.ok else 1
    try:
        write_plan(plan, args.output, detail=args.detail, stage=args.stage)
    except ValueError as err:  # no stage by that name
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: cannot write {str(args.output)!r}: {err.strerror or err}",
              file=sys.stderr)
        return 1
    except MissingDot as err:
        print(f"error: {err}\n  hint: {GRAPHVIZ_HINT}", file=sys.stderr)
        return 1
    for diagnostic in located(plan):
        print(diagnostic, file=sys.stderr)
    print(f"wrote {args.output}; {summary(plan)}")
    return 0 if plan.ok else 1


class MissingDot(Exception):
    """The Graphviz `dot` binary is needed to draw SVG or PNG and is not installed."""


def write_plan(plan: ExecutionPlan, path: Path, *, detail: Detail = "compact",
               stage: str | None = None) -> None:
    """Write ``plan`` to ``path`` in the format its suffix names, making missing folders;
    a drawing has the given ``detail`` and only ``stage`` when one is named."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(plan.to_json() + "\n", encoding="utf-8")
        return
    graph = plan.to_graphviz(detail=detail, stage=stage)
    path.parent.mkdir(parents=True, exist_ok=True)
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
