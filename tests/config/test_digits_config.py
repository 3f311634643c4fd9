"""examples/digits.yaml, the config twin of examples/digits.py: the same plan, the same weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import stagegraph as sg
from stagegraph.config import load_config
from stagegraph.loading import load_experiment

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
PYTHON, CONFIG = str(EXAMPLES / "digits.py"), str(EXAMPLES / "digits.yaml")


def plans(**compile_options: Any) -> tuple[sg.ExecutionPlan, sg.ExecutionPlan]:
    python = sg.compile(load_experiment(PYTHON), **compile_options)
    return python, sg.compile(load_config(CONFIG, static=True), **compile_options)


def test_the_run_plan_is_the_python_plan() -> None:
    python = sg.compile(load_experiment(PYTHON), logdir="runs/digits")
    config = sg.compile(load_config(CONFIG), logdir="runs/digits")
    assert config.ok and config == python  # stages, callbacks, order, edges: the same hash
    assert config.to_json() == python.to_json()


def test_the_validate_plan_is_the_python_plan() -> None:
    # Without importing digits.py: HeldOutAccuracy is read from its source.
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


def test_validating_the_config_imports_no_torch() -> None:
    code = ("import sys\n"
            "from stagegraph.cli import main\n"
            f"assert main(['validate', {CONFIG!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'digits' not in sys.modules, 'the user module was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
