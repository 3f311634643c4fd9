"""The README's main job: the digits example validates, draws and trains to a sensible accuracy."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "examples" / "digits.py"
CLI = [sys.executable, "-m", "stagegraph"]

pytest.importorskip("sklearn")


def stagegraph(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_validate_and_plan(tmp_path: Path) -> None:
    result = stagegraph("validate", str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Without --logdir the checkpoint and the prediction writer are noted (SF510): the run needs
    # a logdir. With one, nothing at all.
    assert "0 error(s), 0 warning(s)" in result.stdout, result.stdout
    result = stagegraph("validate", str(EXAMPLE), "--logdir", "runs/digits", cwd=tmp_path)
    assert result.returncode == 0 and "no problems" in result.stdout, result.stdout
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot binary is not installed")
    # As the README does: the folder does not exist yet.
    result = stagegraph("plan", str(EXAMPLE), "-o", "runs/digits/plan.svg", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    svg = tmp_path / "runs" / "digits" / "plan.svg"
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_full_run_trains_checkpoints_logs_and_predicts(tmp_path: Path) -> None:
    logdir = tmp_path / "runs"
    result = stagegraph("run", str(EXAMPLE), "--logdir", str(logdir), "--device", "cpu",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    for stage in ("pretrain", "train", "finetune"):
        assert (logdir / "checkpoints" / f"{stage}.best.pth").is_file()
        assert (logdir / "checkpoints" / f"{stage}.last.pth").is_file()
        rows = list(csv.DictReader((logdir / "logs" / f"{stage}.csv").open()))
        assert rows and "valid_accuracy" in rows[0]
    train_rows = list(csv.DictReader((logdir / "logs" / "train.csv").open()))
    assert max(float(r["valid_accuracy"]) for r in train_rows) >= 0.95
    predictions = list(csv.DictReader((logdir / "predictions" / "infer_infer.csv").open()))
    assert len(predictions) == 297
    accuracy = float((logdir / "test_accuracy.txt").read_text())
    assert accuracy >= 0.9
    assert accuracy == pytest.approx(
        sum(r["logits_argmax"] == r["targets"] for r in predictions) / len(predictions), abs=1e-4)
    assert "best valid metrics per stage" in result.stderr  # the console is on stderr
    # stdout holds only what the example's own callback prints.
    assert result.stdout.splitlines() == [f"held-out test accuracy: {accuracy:.4f} on 297 images"]
    assert "[train] early stop after epoch" in result.stderr
