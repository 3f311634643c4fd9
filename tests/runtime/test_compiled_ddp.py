"""A compiled stage (``compile=``) under real 2-rank DDP (gloo, CPU): the same losses and weights
as the eager 2-rank run, and no recompilation across epochs.

The fixture is tests/runtime/fixtures/compiled_ddp.py; the backend is ``aot_eager`` (dynamo and
AOTAutograd without inductor's C++ code generation, which takes tens of seconds per graph here).
Two launches of ``stagegraph run --ddp 2``, a few seconds each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from test_ddp_torchrun import launch

FIXTURE = Path(__file__).parent / "fixtures" / "compiled_ddp.py"
COMMAND = ["-m", "stagegraph", "run", str(FIXTURE), "--ddp", "2", "--quiet"]


def _record(out: Path, rank: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / f"record.rank{rank}.json").read_text())
    return data


def test_two_ranks_compiled_train_as_eager_and_compile_once(tmp_path: Path) -> None:
    for name, backend in (("eager", ""), ("compiled", "aot_eager")):
        done = launch(COMMAND, tmp_path / name, SG_COMPILE=backend)
        assert done.code == 0, done.err
        assert "times, more than" not in done.err, done.err  # no recompilation reported
    for rank in (0, 1):
        eager, compiled = (_record(tmp_path / n, rank) for n in ("eager", "compiled"))
        assert len(compiled["losses"]) == len(eager["losses"]) == 15  # 3 epochs of 5 batches
        assert torch.allclose(torch.tensor(compiled["losses"]), torch.tensor(eager["losses"]),
                              rtol=1e-5, atol=1e-6)
        weights = [torch.load(tmp_path / n / f"weights.rank{rank}.pt") for n in ("eager",
                                                                                 "compiled")]
        for key, value in weights[0].items():
            assert torch.allclose(weights[1][key], value, rtol=1e-5, atol=1e-6), key
        counts = compiled["counts"]
        assert eager["counts"] == [{}, {}, {}]
        # Compiled in the first epoch (train, the last smaller batch, eval), never again.
        assert all(1 <= n <= 4 for n in counts[0].values()), counts
        assert counts[0] == counts[1] == counts[2], counts
        assert set(counts[0]) == {"model", "criterion"}
