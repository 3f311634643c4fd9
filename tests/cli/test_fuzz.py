"""Fuzzing: random, often invalid, experiments never crash `compile` or the CLI.

`compile` always returns a plan with diagnostics (never raises), every plan verifies and every
accepted plan round-trips through JSON; `stagegraph validate | plan | explain` on a random
experiment file exits 0 or 1 (2 only for a usage error the case made on purpose) and never
prints a traceback or an internal error. Cases come from `fuzz_cases.py` by seed.

The example counts suit CI (``STAGEGRAPH_FUZZ_COMPILE`` / ``STAGEGRAPH_FUZZ_CLI`` change them);
``python scripts/fuzz.py`` runs many more.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import random
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import fuzz_cases
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagegraph as sg
from stagegraph.cli import main

COMPILE_EXAMPLES = int(os.environ.get("STAGEGRAPH_FUZZ_COMPILE", "3000"))
CLI_EXAMPLES = int(os.environ.get("STAGEGRAPH_FUZZ_CLI", "1500"))
SEEDS = st.integers(0, 2**64 - 1)


def check_compile(seed: int) -> sg.ExecutionPlan:
    """One compile case: asserts the compiler's promises; returns the plan."""
    rng = random.Random(seed)
    exp = fuzz_cases.experiment(rng)
    plan = sg.compile(exp, rank=fuzz_cases.pick(rng, ["single", "master", "worker", "boss"]),
                      device=fuzz_cases.pick(rng, fuzz_cases.DEVICES),
                      logdir=fuzz_cases.pick(rng, [None, "runs/x"]),
                      verbose=fuzz_cases.sometimes(rng, 0.5))
    assert isinstance(plan, sg.ExecutionPlan)
    for diagnostic in plan.diagnostics:
        assert diagnostic.code.startswith("SF") and diagnostic.message
    assert sg.verify(plan) == []
    if plan.ok:
        assert plan.stages
        assert sg.ExecutionPlan.model_validate_json(plan.to_json()).hash == plan.hash
    return plan


@settings(max_examples=COMPILE_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(SEEDS)
def test_compile_returns_diagnostics_and_plans_verify(seed: int) -> None:
    check_compile(seed)


def test_the_cases_are_varied() -> None:
    """Over a few hundred seeds: accepted plans, stage cycles, key cycles, many codes."""
    plans = [check_compile(seed) for seed in range(300)]
    codes = {d.code for plan in plans for d in plan.diagnostics}
    assert sum(plan.ok for plan in plans) >= 10
    assert {"SF101", "SF102", "SF104", "SF105", "SF106", "SF108", "SF201", "SF401"} <= codes
    assert len(codes) >= 20


@contextlib.contextmanager
def cases_folder(tmp: Path) -> Iterator[itertools.count[int]]:
    """Where case files go: no bytecode caches, and their modules forgotten afterwards."""
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield itertools.count()
    finally:
        sys.dont_write_bytecode = dont_write
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(tmp)):
                del sys.modules[name]
        if str(tmp) in sys.path:
            sys.path.remove(str(tmp))


def check_cli(seed: int, folder: Path, number: int) -> int:
    """One CLI case: a random file and command line; returns the exit code."""
    rng = random.Random(seed)
    path = folder / f"case_{number}.py"
    path.write_text(fuzz_cases.source(rng), encoding="utf-8")
    argv, usage_ok = fuzz_cases.arguments(rng, str(path))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a mangled file's invalid escapes, say
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    text = out.getvalue() + err.getvalue()
    assert code in ((0, 1) if usage_ok else (2,)), (argv, code, text)
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    return code


def test_the_cli_exits_0_or_1_without_a_traceback(tmp_path: Path) -> None:
    codes: list[int] = []
    with cases_folder(tmp_path) as numbers:

        @settings(max_examples=CLI_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(SEEDS)
        def case(seed: int) -> None:
            codes.append(check_cli(seed, tmp_path, next(numbers)))

        case()
    assert len(codes) >= min(CLI_EXAMPLES, 100)
    assert {0, 1} <= set(codes)


@pytest.mark.parametrize("seed", range(3))
def test_a_case_is_its_seed(seed: int) -> None:
    first = fuzz_cases.source(random.Random(seed))
    assert first == fuzz_cases.source(random.Random(seed))
