"""`stagegraph` as a process: `python -m stagegraph`, the console script, start-up without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import FIXTURES, INVALID, VALID, command

NO_TORCH = """
import sys
from stagegraph.cli import main
for args, expected in {cases!r}:
    code = main(args)
    assert code == expected, (args, code)
    assert "torch" not in sys.modules, f"{{args}} imported torch"
"""

NO_TORCH_CASES = [
    (["validate", VALID], 0),
    (["validate", INVALID, "--format", "json"], 1),
    (["plan", VALID], 0),
    (["plan", VALID, "-o", "plan.dot"], 0),
    (["plan", VALID, "-o", "plan.json"], 0),
    (["explain", VALID, "--stage", "pretrain", "accuracy", "report"], 0),
    (["schema"], 0),
    (["plan", str(FIXTURES / "exp_raises.py")], 1),
]


def test_validate_plan_explain_schema_never_import_torch(tmp_path: Path) -> None:
    code = NO_TORCH.format(cases=NO_TORCH_CASES)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plan.dot").exists() and (tmp_path / "plan.json").exists()


def test_python_dash_m(tmp_path: Path) -> None:
    result = command("validate", INVALID, cwd=tmp_path)
    assert result.code == 1
    assert "error[SF402]" in result.out
    assert "Traceback" not in result.text


@pytest.mark.parametrize("spec", ["exp_raises.py", "exp_shapes.py:raises"])
def test_no_traceback_from_a_fresh_process(tmp_path: Path, spec: str) -> None:
    result = command("plan", str(FIXTURES / spec), cwd=tmp_path)
    assert result.code == 1
    assert "Traceback" not in result.text
    assert result.err.startswith("error[SF00")


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "stagegraph"
    if not script.exists():
        pytest.skip("the `stagegraph` console script is not installed next to this Python")
    done = subprocess.run([str(script), "validate", VALID], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0
    assert done.stdout.startswith("ok: experiment 'fixture'")


CLOSED_PIPE = """
import os, sys
read, write = os.pipe()
os.close(read)
os.dup2(write, sys.stdout.fileno())
from stagegraph.cli import main
code = main(["plan", {path!r}])
sys.stderr.write(f"exit {{code}}")
"""


def test_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    # `stagegraph plan EXP | head -1`: the reader leaves before the output is written.
    done = subprocess.run([sys.executable, "-c", CLOSED_PIPE.format(path=VALID)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.stderr.endswith("exit 141"), done.stderr
    assert "Traceback" not in done.stderr
