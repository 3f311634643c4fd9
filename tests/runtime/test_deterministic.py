"""``Experiment(deterministic=True)``: recorded in the plan, the flags set during the run and
restored after it, bit-identical weights from two runs; the config file accepts it too."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import stagegraph as sg
from stagegraph.compiler.text import plan_to_text
from stagegraph.config import load_config
from stagegraph.runtime.determinism import CUBLAS_VALUE, CUBLAS_VARIABLE

FIXTURES = Path(__file__).parent.parent / "config" / "fixtures"


class Observe(sg.Callback):
    """Records the determinism settings as the run sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    def on_batch_end(self, runner: Any) -> None:
        self.seen = {"algorithms": torch.are_deterministic_algorithms_enabled(),
                     "cudnn_deterministic": torch.backends.cudnn.deterministic,
                     "benchmark": torch.backends.cudnn.benchmark,
                     "cublas": os.environ.get(CUBLAS_VARIABLE)}


def _experiment(deterministic: Any = True, **callbacks: Any) -> sg.Experiment:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    exp = sg.Experiment("det", seed=5, deterministic=deterministic,
                        model=lambda: nn.Sequential(nn.Linear(5, 16), nn.Dropout(0.5),
                                                    nn.Linear(16, 2)),
                        criterion=nn.CrossEntropyLoss(),
                        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-2))
    exp.add_stage("train", num_epochs=2, callbacks=callbacks,
                  loaders={"train": DataLoader(data, batch_size=8, shuffle=True),
                           "valid": DataLoader(data, batch_size=16)})
    return exp


def test_the_plan_records_it() -> None:
    plan = sg.compile(_experiment())
    assert plan.ok and plan.deterministic
    assert '"deterministic":true' in plan.model_dump_json()
    assert "seed 5 (deterministic)" in plan_to_text(plan).splitlines()[0]
    assert not sg.compile(_experiment(False)).deterministic
    assert sg.compile(_experiment()).hash != sg.compile(_experiment(False)).hash
    bad = sg.compile(_experiment("yes"))
    assert [d.code for d in bad.errors] == ["SF109"]
    assert "deterministic must be True or False, not 'yes'" in bad.errors[0].message


def test_flags_are_set_during_the_run_and_restored_after() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              os.environ.get(CUBLAS_VARIABLE))
    observe = Observe()
    sg.run(_experiment(observe=observe), device="cpu", verbose=False)
    assert observe.seen == {"algorithms": True, "cudnn_deterministic": True, "benchmark": False,
                            "cublas": CUBLAS_VALUE}
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            os.environ.get(CUBLAS_VARIABLE)) == before
    sg.run(_experiment(False, observe=observe), device="cpu", verbose=False)
    assert observe.seen["algorithms"] is before[0]


def test_a_cublas_setting_of_the_user_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CUBLAS_VARIABLE, ":16:8")
    observe = Observe()
    sg.run(_experiment(observe=observe), device="cpu", verbose=False)
    assert observe.seen["cublas"] == ":16:8"
    assert os.environ[CUBLAS_VARIABLE] == ":16:8"


def test_two_runs_give_bit_identical_weights() -> None:
    first = sg.run(_experiment(), device="cpu", verbose=False).model.state_dict()
    second = sg.run(_experiment(), device="cpu", verbose=False).model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_config_file_takes_it_and_the_new_callbacks_by_name(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "tiny_parts.py", tmp_path / "tiny_parts.py")
    config = tmp_path / "exp.yaml"
    config.write_text("""\
experiment: tiny-det
deterministic: true
model: {_target_: tiny_parts.model}
criterion: {_target_: torch.nn.CrossEntropyLoss}
optimizer: {_target_: torch.optim.SGD, lr: 0.1, momentum: 0.9}
loaders: {_target_: tiny_parts.loaders}
stages:
  train:
    num_epochs: 2
    callbacks:
      lr: {_target_: LRMonitor, groups: 2}
      summary: {_target_: ModelSummary}
      freeze: {_target_: FreezeCallback, modules: ["*"], unfreeze_at_epoch: 2, unfreeze_lr: 0.01}
""")
    plan = sg.compile(load_config(str(config), static=True))
    assert plan.ok, plan.diagnostics
    assert plan.deterministic
    assert "epoch_metric.lr/group1" in plan.stage("train").callback("lr").writes
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(config.read_text().replace("deterministic: true", "deterministic: maybe"))
    with pytest.raises(Exception, match="deterministic"):
        load_config(str(wrong), static=True)


def test_a_plan_saved_before_the_field_existed_compares_as_not_deterministic() -> None:
    from stagegraph.compiler.diff import plan_changes

    current = sg.compile(_experiment(False)).model_dump(mode="json")
    older = {k: v for k, v in current.items() if k != "deterministic"}
    assert plan_changes(older, current) == []
    changed = sg.compile(_experiment(True)).model_dump(mode="json")
    assert [str(c) for c in plan_changes(older, changed)] == [
        "param 'deterministic': changed from False to True"]
