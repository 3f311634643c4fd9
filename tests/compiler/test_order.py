"""Pass 5, callback order: hard edges first, then bucket, then declaration order."""

from __future__ import annotations

from conftest import LOADERS, Metric, Plain, codes, experiment

import stagegraph as sg


def names(plan: sg.ExecutionPlan, stage: str = "train") -> list[str]:
    return [cb.name for cb in plan.stage(stage).callbacks]


def compile_stage(callbacks: dict[str, sg.Callback], **kwargs: object) -> sg.ExecutionPlan:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks=callbacks, **kwargs)  # type: ignore[arg-type]
    return sg.compile(exp, verbose=False)


def test_buckets_then_declaration_order() -> None:
    plan = compile_stage({
        "log": Plain(order=sg.CallbackOrder.Logging),
        "early": Plain(order=sg.CallbackOrder.Internal),
        "acc": Metric(),
    })
    order = names(plan)
    assert order.index("early") < order.index("acc") < order.index("criterion")
    assert order.index("criterion") < order.index("optimizer") < order.index("log")


def test_dataflow_puts_writer_before_reader_against_buckets() -> None:
    # 'reader' sits in an earlier bucket but reads what 'writer' writes.
    plan = compile_stage({
        "reader": Plain(order=0, reads=["metric.custom"]),
        "writer": Plain(order=150, writes=["metric.custom"]),
    })
    order = names(plan)
    assert order.index("writer") < order.index("reader")
    stage = plan.stage("train")
    (inv,) = [e for e in stage.inversions if e.target == "reader"]
    assert (inv.source, inv.target, inv.kind, inv.key) == ("writer", "reader", "dataflow",
                                                           "metric.custom")
    assert "note: 'writer' (150) runs before 'reader' (Internal (0))" in str(plan)


def test_explicit_after_and_before() -> None:
    plan = compile_stage({
        "a": Plain(),
        "b": Plain(before=["a"]),
        "c": Plain(after=["a"], order=0),
    })
    order = names(plan)
    assert order.index("b") < order.index("a") < order.index("c")
    reasons = {(e.source, e.target): e.reason for e in plan.stage("train").edges}
    assert reasons[("b", "a")] == "'b' declares before='a'"
    assert reasons[("a", "c")] == "'c' declares after='a'"


def test_wildcard_reads_follow_every_writer_of_the_namespace() -> None:
    plan = compile_stage({"acc": Metric(), "f1": Metric("f1")})
    stage = plan.stage("train")
    sources = {e.source for e in stage.edges if e.target == "metric_aggregation"}
    assert {"acc", "f1", "criterion"} <= sources


def test_unknown_name_in_after_suggests() -> None:
    plan = compile_stage({"acc": Metric(), "x": Plain(after=["acc_"])})
    (diag,) = [d for d in plan.diagnostics if d.code == "SF401"]
    assert "Did you mean 'acc'?" in diag.message
    assert str(diag.location) == "stage 'train' > callback 'x'"


def test_cycle_prints_path_and_reasons() -> None:
    plan = compile_stage({
        "a": Plain(reads=["metric.c"], writes=["metric.a"]),
        "b": Plain(reads=["metric.a"], writes=["metric.b"]),
        "c": Plain(reads=["metric.b"], writes=["metric.c"]),
    })
    (diag,) = [d for d in plan.diagnostics if d.code == "SF402"]
    assert "a -> b -> c -> a" in diag.message
    assert "a -> b: 'a' writes 'metric.a', which 'b' reads" in diag.message
    assert "c -> a: 'c' writes 'metric.c', which 'a' reads" in diag.message
    assert not plan.ok
    assert sg.verify(plan) == []


def test_explicit_cycle_through_after() -> None:
    plan = compile_stage({"a": Plain(after=["b"]), "b": Plain(after=["a"])})
    assert "SF402" in codes(plan)


def test_self_reference_is_reported() -> None:
    plan = compile_stage({"a": Plain(after=["a"])})
    assert "SF401" in codes(plan)


def test_after_naming_a_callback_of_another_stage_says_where_it_is() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"accuracy": Metric()})
    exp.add_stage("finetune", loaders=dict(LOADERS),
                  callbacks={"accuracy_report": Plain(after=["accuracy"])})
    (diag,) = sg.compile(exp).errors
    assert (diag.code, str(diag.location)) == (
        "SF401", "stage 'finetune' > callback 'accuracy_report'")
    assert "Did you mean" not in diag.message  # never the callback itself
    assert "Only stage(s) 'train' have a callback 'accuracy'" in diag.message
    assert diag.hint.startswith("remove 'accuracy' from after, or name one of the callbacks")
    assert "'accuracy_report'" not in diag.hint


def test_twin_with_the_callback_in_the_same_stage_validates_clean() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={"accuracy": Metric()})
    exp.add_stage("finetune", loaders=dict(LOADERS), callbacks={
        "accuracy": Metric(), "accuracy_report": Plain(after=["accuracy"])})
    plan = sg.compile(exp)
    assert plan.ok and not plan.diagnostics, plan.diagnostics
