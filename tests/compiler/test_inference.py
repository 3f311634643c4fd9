"""Reads and writes inferred from callback source (compiler/inference.py, compiler/inferred.py)."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import linecache
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import LOADERS, Metric, Plain, codes, experiment

import stagegraph as sg
from stagegraph.compiler.diff import plan_changes
from stagegraph.compiler.inference import _infer, infer_accesses
from stagegraph.compiler.render import to_graphviz

HERE = Path(__file__).name


def at(marker: str) -> str:
    """``test_inference.py:N``, N the line of this file that holds ``marker``."""
    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    (number,) = [i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# {marker}")]
    return f"{HERE}:{number}"


def found(cls: type) -> list[tuple[str, str]]:
    return [(a.key, a.access) for a in infer_accesses(cls)]


def compile_stage(callbacks: dict[str, sg.Callback], **kwargs: Any) -> sg.ExecutionPlan:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks=callbacks, **kwargs)
    return sg.compile(exp, verbose=False)


# --- what the reader recognises -----------------------------------------------------------------
class EveryDictionary(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        runner.input["targets"]  # input
        runner.output["logits"]
        runner.batch_metrics["loss"]
        runner.loader_metrics["accuracy"]
        runner.epoch_metrics["train_loss"]
        self.runner.valid_metrics["f1"]  # any expression before the dictionary


def test_each_runner_dictionary_has_its_namespace() -> None:
    assert found(EveryDictionary) == [
        ("batch.targets", "read"), ("output.logits", "read"), ("metric.loss", "read"),
        ("loader_metric.accuracy", "read"), ("epoch_metric.train_loss", "read"),
        ("valid_metric.f1", "read")]
    first = infer_accesses(EveryDictionary)[0]
    assert first.where == at("input") and first.event == "on_batch_end" and not first.optional


class Writes(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["accuracy"] = 1.0  # store
        runner.batch_metrics.setdefault("count", 0)
        runner.batch_metrics.update({"f1": 0.5, runner.loader_name: 1}, recall=0.2)
        runner.batch_metrics["total"] += 1  # augmented
        del runner.batch_metrics["gone"]


def test_stores_setdefault_update_and_augmented_assignment() -> None:
    assert found(Writes) == [
        ("metric.accuracy", "write"), ("metric.count", "write"), ("metric.f1", "write"),
        ("metric.recall", "write"), ("metric.total", "read"), ("metric.total", "write")]
    accuracy = infer_accesses(Writes)[0]
    assert accuracy.where == at("store")
    assert {a.where for a in infer_accesses(Writes) if a.key == "metric.total"} == {
        at("augmented")}


class Getter(sg.Callback):
    def on_epoch_end(self, runner: Any) -> None:
        print(runner.valid_metrics.get("auc", 0.0), runner.output.get(0))


def test_get_is_an_optional_read() -> None:
    (access,) = infer_accesses(Getter)
    assert (access.key, access.access, access.optional) == ("valid_metric.auc", "read", True)


class Aliases(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        metrics = runner.batch_metrics
        outputs: dict[str, Any] = runner.output
        rebound = runner.input
        rebound = {}
        metrics["accuracy"] = outputs["logits"]
        print(rebound["not_a_batch_key"])

    def on_epoch_end(self, metrics: Any) -> None:  # a parameter is not an alias
        metrics["nothing"]


def test_local_aliases_of_a_dictionary() -> None:
    assert sorted(found(Aliases)) == [("metric.accuracy", "write"), ("output.logits", "read")]


class NotConstant(sg.Callback):
    name = "accuracy"

    def on_batch_end(self, runner: Any) -> None:
        key = "loss"
        runner.batch_metrics[key]
        runner.batch_metrics[self.name] = 1
        runner.batch_metrics[f"{key}_x"]
        runner.output[0]
        runner.valid_metrics.get(key)
        "f1" in runner.valid_metrics  # noqa: B015 - membership is not a read


def test_keys_that_are_not_string_constants_are_not_known() -> None:
    assert found(NotConstant) == []


class Branches(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        if runner.batch_metrics["gate"] > 0:
            runner.batch_metrics["in_if"]
        else:
            runner.batch_metrics["in_else"]
        try:
            runner.batch_metrics["in_try"]
        except KeyError:
            print("no such metric")
        with contextlib.suppress(KeyError):
            runner.batch_metrics["suppressed"]
        try:
            runner.batch_metrics["try_finally"]
        finally:
            pass
        runner.is_train_loader and runner.batch_metrics["short_circuit"]
        print(runner.batch_metrics["ternary"] if runner.is_train_loader else 0)
        runner.batch_metrics["always"]


def test_reads_in_branches_the_code_may_skip_are_optional() -> None:
    optional = {a.key.split(".")[1]: a.optional for a in infer_accesses(Branches)}
    assert optional == {"gate": False, "in_if": True, "in_else": True, "in_try": True,
                        "suppressed": True, "try_finally": False, "short_circuit": True,
                        "ternary": True, "always": False}


class Docstrings(sg.Callback):
    @property
    def accuracy(self) -> Any:
        return self.runner.batch_metrics["accuracy"]

    @staticmethod
    def helper(runner: Any) -> None:
        """A docstring whose lines
reach column 0, which a dedent could not parse."""
        runner.output["logits"]  # static

    @classmethod
    def build(cls, runner: Any) -> None:
        runner.input["features"]


def test_properties_static_and_class_methods_and_odd_indentation() -> None:
    accesses = infer_accesses(Docstrings)
    assert [(a.key, a.event) for a in accesses] == [
        ("metric.accuracy", "accuracy"), ("output.logits", "helper"), ("batch.features", "build")]
    assert accesses[1].where == at("static")


def logged(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, runner: Any) -> None:
        method(self, runner)

    return wrapper


class Decorated(sg.Callback):
    @logged
    def on_batch_end(self, runner: Any) -> None:
        runner.output["logits"]


def test_a_wrapped_method_is_read_where_it_is_written() -> None:
    assert found(Decorated) == [("output.logits", "read")]


# --- inheritance, built-ins, unreadable source, caching -----------------------------------------
class Base(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        runner.output["base_batch"]

    def on_epoch_end(self, runner: Any) -> None:
        runner.epoch_metrics["base_epoch"]

    def on_loader_end(self, runner: Any) -> None:
        runner.loader_metrics["base_loader"]


class Derived(Base):
    def on_batch_end(self, runner: Any) -> None:  # replaces Base's
        runner.output["derived_batch"]

    def on_epoch_end(self, runner: Any) -> None:  # extends Base's
        super().on_epoch_end(runner)
        runner.epoch_metrics["derived_epoch"]


def test_inherited_methods_count_where_they_run() -> None:
    assert sorted(k for k, _ in found(Derived)) == [
        "epoch_metric.base_epoch", "epoch_metric.derived_epoch", "loader_metric.base_loader",
        "output.derived_batch"]


class BuiltIn(sg.Callback):
    __module__ = "stagegraph.runtime.callbacks.example"  # as if stagegraph shipped it

    def on_batch_end(self, runner: Any) -> None:
        runner.output["built_in"]


class UserOfBuiltIn(BuiltIn):
    def on_epoch_end(self, runner: Any) -> None:
        runner.epoch_metrics["mine"]


def test_stagegraph_callbacks_are_not_read() -> None:
    assert found(sg.Callback) == [] and found(BuiltIn) == []
    assert found(UserOfBuiltIn) == [("epoch_metric.mine", "read")]


def test_classes_without_readable_source_cost_only_the_inference() -> None:
    made = type("Made", (sg.Callback,), {"on_batch_end": lambda self, r: r.output["x"]})
    namespace: dict[str, Any] = {}
    exec("import stagegraph as sg\n"
         "class Executed(sg.Callback):\n"
         "    def on_batch_end(self, runner):\n"
         "        runner.batch_metrics['missing'] = runner.output['missing']\n", namespace)
    executed = namespace["Executed"]
    assert infer_accesses(made) == () and infer_accesses(executed) == ()
    plan = compile_stage({"made": made(), "executed": executed()})
    assert plan.ok and plan.diagnostics == ()
    assert all(cb.inferred == () for cb in plan.stage("train").callbacks)


def test_source_edited_since_import_is_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "edited_callbacks.py"
    path.write_text("import stagegraph as sg\n\n\nclass Edited(sg.Callback):\n"
                    "    def on_batch_end(self, runner):\n"
                    "        runner.output['logits']\n")
    spec = importlib.util.spec_from_file_location("edited_callbacks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Line 5 now holds another method: the code object's first line no longer points at it.
    path.write_text("import stagegraph as sg\n\n\nclass Edited(sg.Callback):\n"
                    "    def on_epoch_end(self, runner):\n        runner.output['other']\n")
    linecache.checkcache(str(path))
    assert infer_accesses(module.Edited) == ()
    sys.modules.pop("edited_callbacks", None)


def test_inference_is_cached_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fresh(sg.Callback):
        def on_batch_end(self, runner: Any) -> None:
            runner.output["logits"]

    first = infer_accesses(Fresh)
    reads: list[str] = []
    real = linecache.getlines
    monkeypatch.setattr(linecache, "getlines", lambda *a, **k: reads.append(a[0]) or real(*a))
    hits = _infer.cache_info().hits
    assert infer_accesses(Fresh) is first and reads == []
    assert _infer.cache_info().hits == hits + 1
    compile_stage({"a": Fresh(), "b": Fresh()})
    assert reads == []


# --- merged into the plan -----------------------------------------------------------------------
class Accuracy(sg.Callback):
    order = sg.CallbackOrder.Metric

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["accuracy"] = 1.0  # accuracy-write


class Reporter(sg.Callback):
    """Reads the accuracy and declares nothing: the catalogue's case."""

    order = sg.CallbackOrder.Internal

    def on_batch_end(self, runner: Any) -> None:
        print(runner.batch_metrics["accuracy"])  # reporter-read


def test_an_undeclared_read_orders_the_reader_after_the_writer() -> None:
    plan = compile_stage({"reporter": Reporter(), "accuracy": Metric("accuracy")})
    assert plan.ok, plan.diagnostics
    stage = plan.stage("train")
    names = [cb.name for cb in stage.callbacks]
    assert names.index("accuracy") < names.index("reporter")
    reporter = stage.callback("reporter")
    assert reporter.reads == ("metric.accuracy",)
    assert [(a.key, a.where) for a in reporter.inferred] == [
        ("metric.accuracy", at("reporter-read"))]
    (edge,) = [e for e in stage.edges if e.target == "reporter"]
    assert edge.inferred == at("reporter-read")
    assert edge.reason == (f"'accuracy' writes 'metric.accuracy', which 'reporter' reads "
                           f"(inferred from source, {at('reporter-read')})")
    assert str(plan.explain("train", "accuracy", "reporter")).splitlines()[1] == (
        f"  accuracy -> reporter: {edge.reason} (dataflow)  "
        "[overrides order buckets: Metric (20) before Internal (0)]")


def test_the_text_form_lists_what_the_code_adds() -> None:
    plan = compile_stage({"reporter": Reporter(), "accuracy": Metric("accuracy"),
                          "train_only": TrainOnly()})
    text = str(plan)
    assert (f"  inferred from code: 'reporter' reads 'metric.accuracy' "
            f"({at('reporter-read')}, on_batch_end)\n") in text
    assert "  inferred from code: 'train_only' reads 'metric.f1' (" in text
    assert "on_batch_end, optional)" in text


class BatchReporter(sg.Callback):
    """Declares its read; handles the event the accuracy is written in."""

    reads = ("metric.accuracy",)

    def on_batch_end(self, runner: Any) -> None: ...


def test_an_undeclared_write_provides_and_orders_too() -> None:
    plan = compile_stage({"reporter": BatchReporter(order=0), "accuracy": Accuracy()})
    assert plan.ok, plan.diagnostics
    (edge,) = [e for e in plan.stage("train").edges if e.target == "reporter"]
    assert edge.reason == (f"'accuracy' writes 'metric.accuracy' (inferred from source, "
                           f"{at('accuracy-write')}), which 'reporter' reads")
    assert plan.stage("train").callback("accuracy").writes == ("metric.accuracy",)


def test_inferred_edges_are_dashed_and_labelled_in_the_drawing() -> None:
    plan = compile_stage({"reporter": Reporter(), "accuracy": Accuracy()})
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(plan.stage("train").callbacks, 1)}
    source = to_graphviz(plan).source
    (line,) = [ln for ln in source.splitlines()
               if ln.strip().startswith(f"{ids['accuracy']} -> {ids['reporter']} [label")]
    assert 'label="overrides order buckets\\nmetric.accuracy (inferred)"' in line
    assert "style=\"bold,dashed\"" in line
    assert "key inferred from code" in source  # the legend


class Counter(sg.Callback):
    order = sg.CallbackOrder.Metric

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["seen"] = runner.batch_metrics["seen"] + 1
        runner.batch_metrics["steps"] += 1


def test_a_key_read_and_written_by_one_callback_is_only_written() -> None:
    plan = compile_stage({"counter": Counter()})
    counter = plan.stage("train").callback("counter")
    assert counter.reads == () and set(counter.writes) == {"metric.seen", "metric.steps"}
    assert plan.ok and not any(e.source == e.target for e in plan.stage("train").edges)


class Declared(sg.Callback):
    reads = ("output.logits", "batch.targets")
    writes = ("metric.accuracy",)

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["accuracy"] = runner.output["logits"] == runner.input["targets"]


def test_declared_keys_are_not_repeated() -> None:
    plan = compile_stage({"acc": Declared()})
    acc = plan.stage("train").callback("acc")
    assert acc.reads == ("output.logits", "batch.targets") and acc.writes == ("metric.accuracy",)
    assert acc.inferred == () and "SF517" not in codes(plan)


def test_a_wildcard_or_placeholder_declaration_covers_its_namespace() -> None:
    plan = compile_stage({"acc": Declared(writes=["metric.*"]), "r": Reporter(reads=["metric.*"])})
    assert plan.stage("train").callback("acc").inferred == ()
    assert plan.stage("train").callback("r").inferred == ()
    plan = compile_stage({"v": Getter(reads=["valid_metric.{main_metric}"])})
    assert plan.stage("train").callback("v").inferred == () and "SF517" not in codes(plan)


# --- checks on inferred keys --------------------------------------------------------------------
class Misspelt(sg.Callback):
    def on_epoch_end(self, runner: Any) -> None:
        print(runner.batch_metrics["acuracy"])  # misspelt


def test_an_inferred_read_nothing_writes_is_sf501_with_its_line() -> None:
    plan = compile_stage({"accuracy": Accuracy(), "log": Misspelt()})
    (diag,) = [d for d in plan.diagnostics if d.code == "SF501"]
    assert str(diag.location) == "stage 'train' > callback 'log' > key 'metric.acuracy'"
    assert diag.message == (f"reads batch metric 'acuracy' (inferred from source, "
                            f"{at('misspelt')}), which this stage does not produce. Did you mean "
                            "'accuracy'? Its batch metrics: 'accuracy', 'loss'.")


class TrainOnly(sg.Callback):
    def on_batch_end(self, runner: Any) -> None:
        if runner.is_train_loader:
            print(runner.batch_metrics["f1"], runner.valid_metrics.get("auc"))


def test_optional_reads_order_but_are_not_required() -> None:
    plan = compile_stage({"t": TrainOnly()})
    assert plan.ok and "SF501" not in codes(plan)
    assert plan.stage("train").callback("t").reads == ("metric.f1", "valid_metric.auc")
    plan = compile_stage({"t": TrainOnly(), "f1": Metric("f1")})
    assert any(e.source == "f1" and e.target == "t" for e in plan.stage("train").edges)


class WrongKey(sg.Callback):
    order = sg.CallbackOrder.Metric
    reads = ("output.logits",)
    writes = ("metric.acc",)

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["accuracy"] = runner.output["logits"]  # wrong-key


class WritesItsRead(sg.Callback):
    reads = ("metric.loss",)

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["loss"] = runner.batch_metrics["loss"] * 2  # writes-read


def test_sf517_code_contradicts_the_declarations() -> None:
    plan = compile_stage({"accuracy": WrongKey(), "scale": WritesItsRead()})
    wrong, writes_read = [d for d in plan.diagnostics if d.code == "SF517"]
    assert wrong.severity is sg.Severity.warning
    assert str(wrong.location) == "stage 'train' > callback 'accuracy' > key 'metric.accuracy'"
    assert wrong.message == (
        f"its code writes 'metric.accuracy' ({at('wrong-key')}, in on_batch_end), which its "
        "declarations ('metric.acc') do not list. Did you mean 'metric.acc'?")
    assert wrong.hint == "add 'metric.accuracy' to writes=[...], or fix the key in the code"
    assert str(writes_read.location) == "stage 'train' > callback 'scale' > key 'metric.loss'"
    assert writes_read.message == (f"its code writes 'metric.loss' ({at('writes-read')}, in "
                                   "on_batch_end), which it declares only as read")
    # The inferred write counts: the accuracy exists, and the scaler runs before the optimizer.
    stage = plan.stage("train")
    assert "metric.accuracy" in stage.callback("accuracy").writes
    assert any(e.source == "scale" and e.target == "optimizer" for e in stage.edges)


def test_sf517_hints_validate_clean() -> None:
    plan = compile_stage({"accuracy": WrongKey(writes=["metric.acc", "metric.accuracy"]),
                          "scale": WritesItsRead(writes=["metric.loss"])})
    assert "SF517" not in codes(plan)


def test_no_sf517_without_declarations_in_the_namespace_or_when_allowed() -> None:
    plan = compile_stage({"r": Reporter(reads=["output.logits"]), "a": Accuracy()})
    assert "SF517" not in codes(plan)  # it declares no metric key: its code says what it reads
    plan = compile_stage({"accuracy": WrongKey(lints={"SF517": "allow"})})
    assert "SF517" not in codes(plan)


def test_a_migrated_callback_keeps_its_inferred_keys() -> None:
    exp = experiment()
    tracker = Reporter(scope=sg.CallbackScope.experiment)
    exp.add_stage("one", loaders=dict(LOADERS), callbacks={"r": tracker, "a": Metric("accuracy")})
    exp.add_stage("two", loaders=dict(LOADERS))
    plan = sg.compile(exp, verbose=False)
    migrated = plan.stage("two").callback("r")
    assert migrated.origin == "migrated" and migrated.inferred[0].key == "metric.accuracy"
    (diag,) = [d for d in plan.diagnostics if d.code == "SF501"]
    assert diag.location.stage == "two" and "inferred from source" in diag.message


def test_moved_source_lines_are_not_a_plan_change() -> None:
    plan = compile_stage({"reporter": Reporter(), "accuracy": Accuracy()})
    saved = plan.model_dump(mode="json")
    moved = plan.model_dump(mode="json")
    for stage in moved["stages"]:
        for cb in stage["callbacks"]:
            for access in cb["inferred"]:
                access["where"] = "elsewhere.py:1"
        for edge in stage["edges"]:
            if edge["inferred"]:
                edge["inferred"] = "elsewhere.py:1"
                edge["reason"] = edge["reason"].replace(HERE, "elsewhere.py")
    assert plan_changes(saved, moved) == []
    assert sg.ExecutionPlan.model_validate_json(plan.to_json()).hash == plan.hash


class LoaderEndReader(sg.Callback):
    """Writes a batch metric and, at loader end, looks at the previous epoch's valid value."""

    order = sg.CallbackOrder.Metric

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["hits"] = runner.output["logits"].sum()

    def on_loader_end(self, runner: Any) -> None:
        print(runner.valid_metrics.get("hits", 0.0))


def test_no_edge_between_a_write_and_a_read_in_different_events() -> None:
    """Validation writes valid metrics in on_epoch_end; a read in on_loader_end comes first
    whatever the order, so it makes no edge — and no false cycle through the aggregation."""
    plan = compile_stage({"reader": LoaderEndReader()})
    assert plan.ok, plan.diagnostics
    stage = plan.stage("train")
    assert not [e for e in stage.edges if e.source == "validation" and e.target == "reader"]
    assert [e for e in stage.edges if e.source == "reader" and e.target == "metric_aggregation"]
    (access,) = [a for a in stage.callback("reader").inferred if a.key == "valid_metric.hits"]
    assert access.events == ("on_loader_end",)


def test_a_declared_read_at_epoch_end_of_a_batch_metric_needs_no_order() -> None:
    plan = compile_stage({"reporter": Plain(order=0, reads=["metric.accuracy"]),
                          "accuracy": Accuracy()})
    assert plan.ok, plan.diagnostics
    assert not [e for e in plan.stage("train").edges if e.target == "reporter"]


class Probs(sg.Callback):
    """Declares what it writes in 'output'; reads another output key undeclared."""

    order = sg.CallbackOrder.Metric
    writes = ("output.probs",)

    def on_batch_end(self, runner: Any) -> None:
        runner.output["probs"] = runner.output["logits"].softmax(1)


def test_declared_writes_say_nothing_about_reads_in_the_namespace() -> None:
    plan = compile_stage({"probs": Probs()})
    assert "SF517" not in [d.code for d in plan.diagnostics]
    assert "output.logits" in plan.stage("train").callback("probs").reads


def handler_with_its_own_loss(runner: Any, batch: Any) -> Any:
    logits = runner.model(batch[0])
    runner.batch_metrics["loss"] = (logits - batch[1]).pow(2).mean()
    return {"logits": logits}


def test_a_handler_function_writing_its_loss_provides_it() -> None:
    """A custom batch handler that computes the loss itself needs no criterion."""
    exp = sg.Experiment("own-loss", model=object(), optimizer=object(),
                        handler=handler_with_its_own_loss)
    exp.add_stage("train", loaders=dict(LOADERS))
    plan = sg.compile(exp, verbose=False)
    assert plan.ok, plan.diagnostics
    assert "metric.loss" in plan.stage("train").handler.writes


class FeedsAndReads(sg.Callback):
    order = sg.CallbackOrder.Metric

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["hits"] = runner.output["logits"].sum()

    def on_epoch_end(self, runner: Any) -> None:
        print(runner.valid_metrics["hits"])


class Feeds(sg.Callback):
    order = sg.CallbackOrder.Metric

    def on_batch_end(self, runner: Any) -> None:
        runner.batch_metrics["hits"] = runner.output["logits"].sum()


class ReadsDerived(sg.Callback):
    order = sg.CallbackOrder.External

    def on_epoch_end(self, runner: Any) -> None:
        print(runner.valid_metrics["hits"])


def test_a_callback_feeding_and_reading_a_derived_key_is_told_to_split() -> None:
    (diag,) = [d for d in compile_stage({"acc": FeedsAndReads()}).diagnostics
               if d.code == "SF402"]
    assert "split a callback that writes a key" in diag.hint
    assert "drop one of these" not in diag.hint
    twin = compile_stage({"acc": Feeds(), "report": ReadsDerived()})
    assert twin.ok, twin.diagnostics
