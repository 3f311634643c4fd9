"""Third-party `_target_`s checked from their installed source, without importing them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from stagegraph.config.targets import check_target

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="torch is not installed")

#: The five targets of a typical config (examples/digits.yaml's components).
TYPICAL = [
    ("examples.digits.make_model", [], 0),
    ("torch.nn.CrossEntropyLoss", ["label_smoothing"], 0),
    ("torch.optim.Adam", ["lr", "weight_decay"], 1),
    ("torch.optim.lr_scheduler.CosineAnnealingLR", ["T_max"], 1),
    ("AccuracyCallback", ["topk"], 0),
]

CHECK = """
import json, sys, time
start = time.perf_counter()
from stagegraph.config.targets import check_target
imported = time.perf_counter()
results = [[(p.key, p.message) for p in check_target(path, kwargs, search_path=sys.path,
                                                     positional=positional)]
           for path, kwargs, positional in json.loads(sys.argv[1])]
done = time.perf_counter()
print(json.dumps({"results": results, "torch": sorted(m for m in sys.modules
                                                      if m.split(".")[0] == "torch"),
                  "import": imported - start, "check": done - imported}))
"""


def run_checks(targets: list[tuple[str, list[str], int]]) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-c", CHECK, json.dumps(targets)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_torch_targets_are_checked_without_importing_torch() -> None:
    report = run_checks([*TYPICAL,
                         ("torch.optim.Adma", ["lr"], 1),
                         ("torch.optim.Adam", ["lrr"], 1),
                         ("torch.optim.lr_scheduler.CosineAnnealingLR", [], 1)])
    assert report["torch"] == []
    *typical, adma, lrr, no_t_max = report["results"]
    assert typical == [[]] * len(TYPICAL)
    assert adma == [[None, "torch.optim has no 'Adma' (in torch.optim.Adma). "
                           "Did you mean 'Adam'?"]]
    assert lrr == [["lrr", "torch.optim.Adam does not accept the keyword argument 'lrr'. "
                           "Did you mean 'lr'?"]]
    assert no_t_max == [[None, "torch.optim.lr_scheduler.CosineAnnealingLR needs the argument "
                               "'T_max', which is not given"]]
    # Cold (a fresh process, nothing parsed yet): a typical config's targets in well under a
    # second. A generous bound, for a busy machine; the report of issue 11 quotes the figure.
    assert report["check"] < 1.0, report


@pytest.mark.parametrize(("path", "kwargs"), [
    ("torch.nn.Linear", ["in_features", "out_features", "bias"]),
    ("torch.nn.CrossEntropyLoss", ["weight", "reduction"]),
    ("torch.optim.SGD", ["lr", "momentum", "nesterov"]),
    ("torch.optim.lr_scheduler.StepLR", ["step_size", "gamma"]),
    ("torch.utils.data.DataLoader", ["batch_size", "shuffle"]),
])
def test_common_torch_targets_accept_their_documented_arguments(path: str,
                                                                kwargs: list[str]) -> None:
    assert check_target(path, kwargs, search_path=sys.path) == []


def test_a_misspelt_torch_loss_and_keyword() -> None:
    (problem,) = check_target("torch.nn.CrossEntropyLos", [], search_path=sys.path)
    assert problem.message.endswith("Did you mean 'CrossEntropyLoss'?")
    (problem,) = check_target("torch.nn.CrossEntropyLoss", ["label_smothing"],
                              search_path=sys.path)
    assert problem.key == "label_smothing"
    assert problem.message.endswith("Did you mean 'label_smoothing'?")
    assert "torch/nn/modules/loss.py:" in problem.hint


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
def test_a_scikit_learn_target() -> None:
    assert check_target("sklearn.linear_model.LogisticRegression", ["C", "max_iter"],
                        search_path=sys.path) == []
    (problem,) = check_target("sklearn.linear_model.LogisticRegression", ["max_iters"],
                              search_path=sys.path)
    assert problem.message.endswith("Did you mean 'max_iter'?")
