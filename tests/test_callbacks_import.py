"""`from stagegraph.callbacks import ...` is a real import path to the built-in callbacks."""

from __future__ import annotations

import stagegraph as sg
import stagegraph.runtime.callbacks as runtime_callbacks


def test_import_path_and_attribute_agree() -> None:
    from stagegraph.callbacks import EarlyStoppingCallback, OptimizerCallback

    assert EarlyStoppingCallback is runtime_callbacks.EarlyStoppingCallback
    assert OptimizerCallback is runtime_callbacks.OptimizerCallback
    assert sg.callbacks.CheckpointCallback is runtime_callbacks.CheckpointCallback
    assert set(sg.callbacks.__all__) == set(runtime_callbacks.__all__)
