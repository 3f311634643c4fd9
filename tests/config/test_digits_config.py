"""examples/digits.yaml, the config twin of examples/digits.py: the same plan, the same weights."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import stagegraph as sg
from stagegraph.config import callbacks as config_callbacks
from stagegraph.config import load_config
from stagegraph.config.targets import static_callback
from stagegraph.loading import load_experiment

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
PYTHON, CONFIG = str(EXAMPLES / "digits.py"), str(EXAMPLES / "digits.yaml")


def read_class(path: str, *, search_path: Any) -> Any:
    """A user callback as its source shows it (what stagegraph.config.targets reads), for
    ``module.Class`` in the first folder of ``search_path``."""
    module, _, name = path.rpartition(".")
    file = Path(search_path[0]) / f"{module}.py"
    tree = ast.parse(file.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    declarations = {}
    for node in cls.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                declarations[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                declarations[node.targets[0].id] = ast.unparse(node.value)
    methods = {n.name: n.lineno for n in cls.body if isinstance(n, ast.FunctionDef)}
    return SimpleNamespace(module=module, qualname=name, file=str(file), line=cls.lineno,
                           declarations=declarations, events=methods, methods=methods)


def plans(**compile_options: Any) -> tuple[sg.ExecutionPlan, sg.ExecutionPlan]:
    python = sg.compile(load_experiment(PYTHON), **compile_options)
    return python, sg.compile(load_config(CONFIG, static=True), **compile_options)


def test_the_run_plan_is_the_python_plan() -> None:
    python = sg.compile(load_experiment(PYTHON), logdir="runs/digits")
    config = sg.compile(load_config(CONFIG), logdir="runs/digits")
    assert config.ok and config == python  # stages, callbacks, order, edges: the same hash
    assert config.to_json() == python.to_json()


def test_the_validate_plan_is_the_python_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_callbacks, "static_callback", read_class)
    python, config = plans(logdir="runs/digits")
    assert config == python


@pytest.mark.xfail(static_callback("digits.HeldOutAccuracy", search_path=[str(EXAMPLES)])
                   is None, strict=False,
                   reason="stagegraph.config.targets is a placeholder on this branch: it reads no "
                          "callback from source yet")
def test_the_validate_plan_is_the_python_plan_with_the_real_reader() -> None:
    python, config = plans(logdir="runs/digits")
    assert config == python


def test_both_train_to_bit_identical_weights(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    import torch

    for exp, logdir in ((PYTHON, "python"), (CONFIG, "config")):
        done = subprocess.run([sys.executable, "-m", "stagegraph", "run", exp, "--check",
                               "--quiet", "--device", "cpu", "--logdir", logdir],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for stage in ("pretrain", "train", "finetune"):
        python, config = (torch.load(tmp_path / run / "checkpoints" / f"{stage}.last.pth",
                                     weights_only=False)["model"]
                          for run in ("python", "config"))
        assert list(python) == list(config)
        assert all(torch.equal(python[key], config[key]) for key in python), stage
    assert ((tmp_path / "python" / "test_accuracy.txt").read_text()
            == (tmp_path / "config" / "test_accuracy.txt").read_text())


@pytest.mark.xfail(strict=False, reason="stagegraph.runtime.callbacks imports torch until the "
                                        "built-in callbacks are importable without it (another "
                                        "branch)")
def test_validating_the_config_imports_no_torch() -> None:
    code = ("import sys\n"
            "from stagegraph.cli import main\n"
            f"assert main(['validate', {CONFIG!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'digits' not in sys.modules, 'the user module was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
