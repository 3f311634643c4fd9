"""The `stagegraph` command: validate, plan, explain, run and schema, one module per command.

Exit codes: 0 success; 1 the experiment has errors, could not be loaded, or the run failed;
2 usage error; 75 the run stopped on SIGTERM or SIGUSR1 (after writing a resume checkpoint);
130 interrupted; 141 the output pipe closed early. ``validate`` and ``plan`` never import torch;
``run`` imports the runtime only when it starts (`stagegraph.cli.run.run_plan`).
"""

from __future__ import annotations

from stagegraph.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
