"""Helpers for the CLI tests: fixture paths and running `stagegraph` in process or as a command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stagegraph.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
VALID = str(FIXTURES / "exp_valid.py")
INVALID = str(FIXTURES / "exp_invalid.py")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``stagegraph ARGS`` in this process; a usage error's SystemExit becomes its code."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def command(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m stagegraph ARGS`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-m", "stagegraph", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=120)
    return Result(done.returncode, done.stdout, done.stderr)


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of ``path`` containing ``text``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
