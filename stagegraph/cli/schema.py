"""`stagegraph schema`: the JSON Schema of the plan format."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stagegraph.compiler import ExecutionPlan


def add_parser(sub: Any) -> None:
    schema = sub.add_parser("schema", help="print the JSON Schema of the plan format")
    schema.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    schema.set_defaults(command=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(ExecutionPlan.model_json_schema(), indent=2))
    return 0
