"""`stagegraph plan --loaders`: per loader, whether the batch fast path is used and why not;
and, with ``--logdir``, what the run in that logdir recorded (its ``fast_path.json``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stagegraph.cli.validate import located, summary
from stagegraph.compiler import ExecutionPlan

if TYPE_CHECKING:
    from stagegraph.runtime.fastpath_report import LoaderReport

LOADERS_HELP = ("build each stage's loaders (never the model) and say per loader whether the "
                "batch fast path is used, and if not, why")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loaders", action="store_true", help=LOADERS_HELP)


def cmd_loaders(args: argparse.Namespace, plan: ExecutionPlan) -> int:
    """Print the preview (and the run's record with ``--logdir``); 1 when the plan has errors."""
    if args.output is not None:
        print("stagegraph plan: error: --loaders prints its report; it is not written with -o",
              file=sys.stderr)
        return 2
    if not plan.ok:
        for diagnostic in located(plan):
            print(diagnostic, file=sys.stderr)
        print(f"{summary(plan)}; loaders not built", file=sys.stderr)
        return 1
    from stagegraph.runtime.fastpath_report import preview

    with contextlib.redirect_stdout(sys.stderr):  # what the factories print: stdout is ours
        reports = preview(plan)
    print(f"batch fast path per loader of experiment {plan.experiment!r} (loaders built, "
          "model not):")
    print("\n".join([*_lines(reports), *recorded_lines(args.logdir, plan.experiment)]))
    return 0


def recorded_lines(logdir: str | None, experiment: str) -> list[str]:
    """What the run in ``logdir`` recorded, as lines after a blank one; none without a record.
    A record of another experiment's run says whose it is."""
    if logdir is None:
        return []
    from stagegraph.runtime.fastpath_report import FILE, recorded, recorded_by

    reports = recorded(Path(logdir))
    if reports is None:
        return []
    by = recorded_by(Path(logdir))
    run = "the run" if by == experiment else f"a run of another experiment, {by!r},"
    return ["", f"batch fast path per loader, as {run} recorded it ({Path(logdir) / FILE}):",
            *_lines(reports)]


def _lines(reports: list[LoaderReport]) -> list[str]:
    lines: list[str] = []
    stage = None
    for report in reports:
        if report.stage != stage:
            stage = report.stage
            lines.append(f"stage {stage!r}:")
        lines.append(f"  {report}")
    return lines
