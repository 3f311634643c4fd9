"""`stagegraph schema`: the JSON Schema of the plan format, or (``--config``) of config files."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stagegraph.compiler import ExecutionPlan


def add_parser(sub: Any) -> None:
    schema = sub.add_parser(
        "schema", help="print the JSON Schema of the plan format, or of config files",
        description="Print the JSON Schema of the plan format (plan -o plan.json), or with "
                    "--config of experiment config files, for editors: "
                    "stagegraph schema --config > stagegraph.schema.json")
    schema.add_argument("--config", action="store_true",
                        help="the schema of config files (.yaml, .yml, .json) instead")
    schema.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
    schema.set_defaults(command=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    if args.config:
        from stagegraph.config.jsonschema import config_json_schema

        print(json.dumps(config_json_schema(), indent=2))
    else:
        print(json.dumps(ExecutionPlan.model_json_schema(), indent=2))
    return 0
