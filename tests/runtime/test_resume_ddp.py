"""A distributed run (2 ranks under torchrun, CPU, gloo) resumes on every rank, bit-exactly.

Only the master writes resume checkpoints; every rank resumes from them, each comparing its own
rank's plan with the master's (the callbacks only some ranks run are left out of that).
"""

from __future__ import annotations

from pathlib import Path

import torch
from test_ddp_torchrun import FIXTURE, launch

DDP = ["-m", "stagegraph", "run", str(FIXTURE), "--ddp", "2", "--logdir", "logs", "--quiet"]


def weights(out: Path) -> list[dict[str, torch.Tensor]]:
    return [torch.load(out / f"weights.rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def test_a_distributed_run_resumes_on_every_rank(tmp_path: Path) -> None:
    whole = launch(DDP, tmp_path)
    assert whole.code == 0, whole.err
    expected = weights(tmp_path)
    resume = tmp_path / "logs" / "checkpoints" / "resume"
    newest = sorted(resume.glob("epoch-*.pth"))[-1]
    newest.unlink()  # as if killed before the last checkpoint was renamed into place
    for rank in (0, 1):
        (tmp_path / f"weights.rank{rank}.pt").unlink()
    again = launch([*DDP, "--resume"], tmp_path)
    assert again.code == 0, again.err
    position = "resuming from logs/checkpoints/resume/epoch-000003.pth: stage 'train' after epoch 1"
    assert again.err.count(position) == 2, again.err  # one line per rank
    for before, after in zip(expected, weights(tmp_path), strict=True):
        assert all(torch.equal(before[k], after[k]) for k in before)
    assert "warning" not in again.err.lower(), again.err

