"""The plan: JSON round trip, stable hash, text form."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import Metric, Tracker, experiment

import stagegraph as sg


def build() -> sg.Experiment:
    exp = experiment("pretrain", "train")
    exp.add_stage("infer", loaders={"infer": []})
    exp.stages[0].callbacks = {"acc": Metric(), "tracker": Tracker()}
    return exp


def test_json_round_trip() -> None:
    plan = sg.compile(build(), logdir="runs")
    back = sg.ExecutionPlan.model_validate_json(plan.to_json())
    assert back == plan  # the bound experiment does not count
    assert back.model_dump() == plan.model_dump()
    assert back.verbose is True
    assert back.hash == plan.hash
    assert back.experiment_object is None
    assert plan.experiment_object is not None


def test_plan_is_frozen() -> None:
    plan = sg.compile(build())
    try:
        plan.seed = 3  # type: ignore[misc]
    except Exception as err:  # pydantic's ValidationError for frozen instances
        assert "frozen" in str(err)
    else:
        raise AssertionError("plan accepted a change")


def test_same_experiment_same_hash_twice_and_in_another_process() -> None:
    assert sg.compile(build()).hash == sg.compile(build()).hash
    assert sg.compile(build()).hash != sg.compile(build(), logdir="x").hash
    here = Path(__file__).parent.parent
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(here)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_plan import build
        import stagegraph as sg
        print(sg.compile(build()).hash)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    # The subprocess imports the callbacks from 'conftest' as well, so type names agree.
    assert out.stdout.strip() == sg.compile(build()).hash


def test_text_form_golden() -> None:
    exp = experiment()
    exp.add_stage("train", loaders={"train": [], "valid": []}, num_epochs=2,
                  callbacks={"acc": Metric()}, main_metric="accuracy", minimize_metric=False)
    plan = sg.compile(exp, device="cpu", verbose=False)
    text = str(plan)
    body = text.split("\n", 1)[1]
    assert text.startswith("plan for experiment 'test': seed 1, device cpu, rank single, "
                           "1 stage(s), hash ")
    assert body == textwrap.dedent("""
        stage 1/1 'train': 2 epoch(s), main metric 'accuracy' (max), valid loader 'valid'
          loaders: train (train), valid (valid)
          batch handler: SupervisedHandler('features' -> 'logits')
          callbacks:
             1. acc                 Metric, Metric (20), node all, scope stage, declared
             2. criterion           CriterionCallback, Metric (20), node all, scope stage, default
             3. metric_aggregation  MetricAggregationCallback, MetricAggregation (40), node all, scope stage, default
             4. optimizer           OptimizerCallback, Optimizer (60), node all, scope stage, default
             5. validation          ValidationManagerCallback, Validation (80), node all, scope stage, default
          events:
            on_stage_start: validation
            on_epoch_start: validation
            on_loader_start: metric_aggregation, optimizer
            on_batch_end: acc, criterion, metric_aggregation, optimizer
            on_loader_end: metric_aggregation, optimizer
            on_epoch_end: optimizer, validation""").rstrip()  # noqa: E501
