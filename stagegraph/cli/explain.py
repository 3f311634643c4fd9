"""`stagegraph explain`: why callback A runs before or after B in a stage."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stagegraph.cli.options import common_options, compile_exp, compile_options


def add_parser(sub: Any) -> None:
    explain = sub.add_parser("explain", parents=[common_options(), compile_options()],
                             help="why callback A runs before or after B in a stage")
    explain.add_argument("--stage", required=True, help="the stage to look in")
    explain.add_argument("first", metavar="A")
    explain.add_argument("second", metavar="B")
    explain.set_defaults(command=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    plan = compile_exp(args)
    answer = plan.explain(args.stage, args.first, args.second)
    print(answer)
    if plan.errors:
        print(f"note: the plan has {len(plan.errors)} error(s); see `stagegraph validate "
              f"{args.exp}`", file=sys.stderr)
    return 1 if answer.relation == "unknown" else 0
