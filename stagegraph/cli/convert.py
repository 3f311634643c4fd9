"""`stagegraph convert catalyst CONFIG -o exp.yaml`: a Catalyst 20.x config as a stagegraph
config file, and a located diagnostic for everything that does not translate as it was."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stagegraph.config.catalyst import Conversion, convert_catalyst

FORMATS = ("catalyst",)


def add_parser(sub: Any) -> None:
    convert = sub.add_parser(
        "convert", help="convert another tool's config file into a stagegraph config",
        description="Convert a Catalyst 20.x config (catalyst-dl run --config) into a stagegraph "
                    "config file. Diagnostics go to stderr, at the input's file:line:col; the "
                    "output notes each TODO where it applies. Exit 1 when the file cannot be "
                    "converted (or, with --strict, when there is a warning).")
    convert.add_argument("source", choices=FORMATS, help="the format of CONFIG")
    convert.add_argument("config", metavar="CONFIG", help="the file to convert (.yml/.yaml)")
    convert.add_argument("-o", "--output", metavar="OUT",
                         help="write the stagegraph config here (default: stdout)")
    convert.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    convert.add_argument("--name", help="the experiment's name (default: CONFIG's file stem)")
    convert.add_argument("--data-factory", metavar="PATH",
                         help="the loaders factory the stages call (default: "
                              "<expdir module>.loaders)")
    convert.add_argument("--format", choices=("text", "json"), default="text",
                         help="how diagnostics are printed (to stderr)")
    convert.add_argument("--strict", action="store_true", help="exit 1 if there is a warning")
    convert.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    convert.set_defaults(command=cmd_convert, usage_error=convert.error)


def cmd_convert(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.force:
        args.usage_error(f"{output} exists: pass --force to overwrite it")
    if output is not None and output.suffix.lower() not in (".yaml", ".yml"):
        args.usage_error(f"{output}: the output is YAML: name it .yaml or .yml")
    conversion = convert_catalyst(args.config, name=args.name, data_factory=args.data_factory)
    _report(conversion, args.format)
    if conversion.text is None:
        print(f"stagegraph: {args.config} was not converted", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(conversion.text)
    else:
        output.write_text(conversion.text, encoding="utf-8")
    if args.format == "text":
        print(_summary(conversion, args.config, output), file=sys.stderr)
    warnings = [p for p in conversion.problems if p.severity == "warning"]
    return 1 if args.strict and warnings else 0


def _report(conversion: Conversion, form: str) -> None:
    if form == "json":
        print(json.dumps([p.to_json() for p in conversion.problems], indent=2), file=sys.stderr)
        return
    for problem in conversion.problems:
        print(problem, file=sys.stderr)


def _summary(conversion: Conversion, source: str, output: Path | None) -> str:
    count = {level: sum(p.severity == level for p in conversion.problems)
             for level in ("warning", "info")}
    target = str(output) if output is not None else "stdout"
    text = (f"converted {source} -> {target}: {count['warning']} warning(s), "
            f"{count['info']} note(s)")
    if output is not None:
        text += f"; review its TODO notes, then: stagegraph validate {output}"
    return text
