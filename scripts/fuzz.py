"""Fuzz the compiler and the CLI with many more random experiments than CI runs.

    python scripts/fuzz.py                        # 20,000 compile cases and 5,000 CLI cases
    python scripts/fuzz.py --compile 100000 --cli 20000 --seed 7
    python scripts/fuzz.py --seconds 300          # as many as fit, split 4:1

Cases are the seeds ``seed, seed+1, ...`` of `tests/cli/fuzz_cases.py`, checked by the same
functions as `tests/cli/test_fuzz.py`: `compile` returns diagnostics instead of raising, every
plan verifies, accepted plans round-trip through JSON; `stagegraph validate | plan | explain`
exits 0 or 1 (2 for a usage error made on purpose) without a traceback. A failing case prints its
seed (rerun it with ``--seed N --compile 1`` or ``--cli 1``); the exit code is the number of
failures (at most 100).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "cli")]

from test_fuzz import cases_folder, check_cli, check_compile  # noqa: E402


def run_cases(label: str, count: int, seconds: float | None, first: int,
              check: Callable[[int], object]) -> tuple[int, list[int]]:
    failures: list[int] = []
    start = time.perf_counter()
    done = 0
    for seed in range(first, first + count):
        if seconds is not None and time.perf_counter() - start > seconds:
            break
        try:
            check(seed)
        except Exception:
            failures.append(seed)
            print(f"{label} case failed: seed {seed}", file=sys.stderr)
            traceback.print_exc()
        done += 1
    took = time.perf_counter() - start
    print(f"{label}: {done} cases in {took:.1f}s ({done / max(took, 1e-9):.0f}/s), "
          f"{len(failures)} failure(s)")
    return done, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", type=int, default=20_000, help="compile cases")
    parser.add_argument("--cli", type=int, default=5_000, help="CLI cases")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seconds", type=float, help="a time budget instead of counts")
    args = parser.parse_args(argv)
    compile_budget = cli_budget = None
    if args.seconds is not None:
        compile_budget, cli_budget = args.seconds * 0.8, args.seconds * 0.2
        args.compile = args.cli = 10**9
    outcomes: collections.Counter[str] = collections.Counter()

    def compile_case(seed: int) -> None:
        plan = check_compile(seed)
        outcomes["accepted" if plan.ok else "refused"] += 1

    compiled, compile_failures = run_cases("compile", args.compile, compile_budget, args.seed,
                                           compile_case)
    print(f"  plans accepted: {outcomes['accepted']}, refused with errors: "
          f"{outcomes['refused']}")
    codes: collections.Counter[int] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with cases_folder(folder) as numbers:
            ran, cli_failures = run_cases(
                "cli", args.cli, cli_budget, args.seed,
                lambda seed: codes.update([check_cli(seed, folder, next(numbers))]))
    print(f"  exit codes: {dict(sorted(codes.items()))}")
    print(f"total: {compiled + ran} cases, {len(compile_failures) + len(cli_failures)} "
          "failure(s)")
    return min(len(compile_failures) + len(cli_failures), 100)


if __name__ == "__main__":
    sys.exit(main())
