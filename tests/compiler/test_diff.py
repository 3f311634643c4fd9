"""plan_changes: what changed between two plans, located; what cannot change a result is not."""

from __future__ import annotations

from typing import Any

from conftest import Metric, Tracker, experiment

import stagegraph as sg
from stagegraph.compiler.diff import plan_changes


def dump(exp: sg.Experiment, **options: Any) -> dict[str, Any]:
    return sg.compile(exp, **options).model_dump(mode="json")


def changes(old: sg.Experiment, new: sg.Experiment, **options: Any) -> list[str]:
    return [str(c) for c in plan_changes(dump(old, **options), dump(new, **options))]


def test_the_same_experiment_has_no_changes() -> None:
    assert changes(experiment("a", "b"), experiment("a", "b")) == []


def test_logdir_verbose_and_the_console_are_not_changes() -> None:
    exp = experiment("a", "b")
    quiet = dump(exp, logdir="runs/one", verbose=False)
    loud = dump(exp, logdir="runs/two", verbose=True)
    assert quiet["hash"] != loud["hash"]
    assert plan_changes(quiet, loud) == []


def test_stages_added_removed_and_their_params() -> None:
    new = experiment("a", "c", "b")
    new.stages[2].params["num_epochs"] = 4
    assert changes(experiment("a", "b", "d"), new) == [
        "experiment: stage edge a -> b removed",
        "stage 'c': stage added",
        "stage 'd': stage removed",
        "stage 'b' > param 'after': changed from ['a'] to ['c']",
        "stage 'b' > param 'num_epochs': changed from 1 to 4",
    ]


def test_order_of_common_stages() -> None:
    old = experiment("a", "b")
    new = sg.Experiment("test", seed=1, model=old.components["model"],
                        criterion=old.components["criterion"],
                        optimizer=old.components["optimizer"])
    new.add_stage("b", loaders=dict(old.stages[0].loaders))
    new.add_stage("a", loaders=dict(old.stages[0].loaders))
    found = changes(old, new)
    assert "experiment: stage order changed from ['a', 'b'] to ['b', 'a']" in found
    assert "experiment: stage edge b -> a added" in found
    assert "experiment: stage edge a -> b removed" in found


def test_experiment_fields() -> None:
    old, new = experiment("a"), experiment("a")
    new.seed = 2
    assert changes(old, new) == ["param 'seed': changed from 1 to 2"]
    assert [str(c) for c in plan_changes(dump(old, device="cpu"), dump(old, device="cuda"))] == [
        "param 'device': changed from 'cpu' to 'cuda'"]


def test_callbacks_added_removed_changed_and_reordered() -> None:
    old = experiment("a")
    old.stages[0].callbacks = {"acc": Metric("accuracy"), "f1": Metric("f1"), "t": Tracker()}
    new = experiment("a")
    new.stages[0].callbacks = {"f1": Metric("f1"), "acc": Metric("accuracy", after=("f1",)),
                               "auc": Metric("auc")}
    assert changes(old, new) == [
        "stage 'a' > callback 'auc': callback added (conftest.Metric)",
        "stage 'a' > callback 't': callback removed (conftest.Tracker)",
        "stage 'a' > callback 'acc' > param 'after': changed from [] to ['f1']",
        "stage 'a': callback order changed from ['acc', 'f1', 'criterion', 'metric_aggregation', "
        "'optimizer', 'validation'] to ['f1', 'acc', 'criterion', 'metric_aggregation', "
        "'optimizer', 'validation']",
    ]


def test_default_params_and_loaders() -> None:
    old, new = experiment("a"), experiment("a")
    new.stages[0].loaders = {"train": [], "valid": [], "valid_hard": []}
    found = changes(old, new)
    assert found == ["stage 'a' > param 'loaders': changed from ['train', 'valid'] to "
                     "['train', 'valid', 'valid_hard']"]


def test_long_values_show_where_they_differ() -> None:
    """Two long values alike at both ends: the texts keep the differing middle (cutting both at
    the same length would print the same text twice)."""
    handler = "SupervisedHandler(" + ", ".join(f"'input_{i}'" for i in range(12)) + ")"
    old = {"stages": [{"name": "s", "handler": {"type": handler}}]}
    new = {"stages": [{"name": "s", "handler": {"type": handler.replace("'input_7'",
                                                                        "'input_seven'")}}]}
    (change,) = plan_changes(old, new)
    assert str(change.location) == "stage 's' > param 'handler.type'"
    assert change.text == ("changed from ...'input_6', 'input_7', 'input_8',... to "
                           "...'input_6', 'input_seven', 'input_8',...")


def test_nested_fields_are_named_down_to_the_key_that_changed() -> None:
    names = [f"metric_{i}" for i in range(20)]
    callback = {"name": "tb", "type": "T", "params": {"metric_names": names, "lr": 0.1}}
    old = {"stages": [{"name": "s", "callbacks": [callback]}]}
    new = {"stages": [{"name": "s", "callbacks": [
        {**callback, "params": {"metric_names": [*names[:5], "f1", *names[6:]], "lr": 0.2,
                                "extra": True}}]}]}
    assert [str(c) for c in plan_changes(old, new)] == [
        "stage 's' > callback 'tb' > param 'params.metric_names': changed from "
        "...'metric_4', 'metric_5', 'metric_6',... to ...'metric_4', 'f1', 'metric_6',... "
        "(added ['f1']; removed ['metric_5'])",
        "stage 's' > callback 'tb' > param 'params.lr': changed from 0.1 to 0.2",
        "stage 's' > callback 'tb' > param 'params.extra': added (True)",
    ]


def test_lists_of_records_are_compared_item_by_item() -> None:
    old = {"stages": [{"name": "s", "inferred": [{"key": "a", "kind": "read"},
                                                 {"key": "b", "kind": "read"}]}]}
    new = {"stages": [{"name": "s", "inferred": [{"key": "a", "kind": "read"},
                                                 {"key": "b", "kind": "write"}]}]}
    assert [str(c) for c in plan_changes(old, new)] == [
        "stage 's' > param 'inferred[1].kind': changed from 'read' to 'write'"]


def test_a_value_replaced_whole_is_shown_whole() -> None:
    old = {"stages": [{"name": "s", "batch_keys": ["k" * 10] * 10}]}
    new = {"stages": [{"name": "s", "batch_keys": None}]}
    (change,) = plan_changes(old, new)
    assert change.text == f"changed from {['k' * 10] * 10!r} to None"


def test_plans_of_the_ranks_of_one_run_compare_on_what_every_rank_runs() -> None:
    exp = experiment("a", "b")
    exp.stages[0].callbacks = {"acc": Metric("accuracy"), "log": Metric("f1", node="master")}
    master = dump(exp, rank="master", logdir="runs/x")
    worker = dump(exp, rank="worker", logdir="runs/x")
    assert master["hash"] != worker["hash"]
    assert plan_changes(master, worker) == []
    exp.stages[0].callbacks["acc"] = Metric("accuracy", after=("criterion",))
    assert [str(c) for c in plan_changes(master, dump(exp, rank="worker", logdir="runs/x"))] == [
        "stage 'a' > callback 'acc' > param 'after': changed from [] to ['criterion']",
        "stage 'a': callback order changed from ['acc', 'criterion', 'metric_aggregation', "
        "'optimizer', 'validation'] to ['criterion', 'acc', 'metric_aggregation', 'optimizer', "
        "'validation']"]
