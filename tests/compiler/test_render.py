"""The Graphviz emitter at full detail: DOT text for a small experiment, odd names, SVG through
`dot` (the compact default and one-stage drawings: test_render_compact.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import LOADERS, Metric, Plain, Tracker, experiment
from svg_geometry import crossed_labels, edges_drawn_twice

import stagegraph as sg
from stagegraph.compiler.render import to_graphviz

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="the Graphviz `dot` binary is not installed (CI installs it)")


class Report(sg.Callback):
    order = sg.CallbackOrder.Logging
    node = sg.CallbackNode.master

    def on_epoch_end(self, runner: Any) -> None:
        pass


def small() -> sg.ExecutionPlan:
    """pretrain -> finetune; a migrating tracker, an explicit edge, an inversion, a master node."""
    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS), main_metric="accuracy",
                  minimize_metric=False, callbacks={
                      "tracker": Tracker(),
                      "accuracy": Metric("accuracy"),
                      "reader": Plain(order=0, reads=["metric.custom"]),
                      "writer": Plain(order=150, writes=["metric.custom"]),
                      "report": Report(after=["accuracy"]),
                  })
    exp.add_stage("finetune", loaders=dict(LOADERS))
    return sg.compile(exp, verbose=False)


def node_line(source: str, node_id: str) -> str:
    (line,) = [ln for ln in source.splitlines() if ln.startswith(f"\t\t{node_id} [label=")]
    return line


def full(plan: sg.ExecutionPlan) -> str:
    return to_graphviz(plan, detail="full").source


def test_stages_are_clusters_in_run_order_with_a_summary() -> None:
    source = full(small())
    assert source.index("subgraph cluster_s0 {") < source.index("subgraph cluster_s1 {")
    assert 'label="stage 1: pretrain"' in source and 'label="stage 2: finetune"' in source
    assert ('s0_note [label="1 epoch(s) · main metric accuracy (max), valid loader valid\\n'
            'loaders: train, valid\\n') in source
    assert '\ts0 [label="stage 1: pretrain" color="#888888" fontsize=14' in source  # its tab
    assert "\ts0 -> s0_note [style=invis weight=100]" in source
    assert source.rstrip().endswith("}") and "\tlegend [label=<<table" in source


def test_callbacks_are_numbered_and_chained_in_plan_order() -> None:
    plan = small()
    source = full(plan)
    names = [cb.name for cb in plan.stage("pretrain").callbacks]
    for i, name in enumerate(names, 1):
        assert f's0_c{i} [label="{i}. {name}\\n' in source
    chain = re.findall(r"\t\t(s0_(?:c\d+|note)) -> (s0_c\d+) \[style=invis weight=10\]", source)
    assert chain == [("s0_note", "s0_c1")] + [(f"s0_c{i}", f"s0_c{i + 1}")
                                         for i in range(1, len(names))]


def test_stage_edges_join_the_tabs_and_show_migration() -> None:
    source = full(small())
    (edge,) = [ln.strip() for ln in source.splitlines() if ln.startswith("\ts0 -> s1 ")]
    assert edge == ('s0 -> s1 [label="migrates:\\ntracker" color="#2e7d32" '
                    'fontcolor="#2e7d32" minlen=0 penwidth=2.5 tooltip="migrates: tracker" '
                    'weight=10]')


def test_stage_edges_that_skip_a_tab_keep_migrations_in_the_tooltip() -> None:
    exp = experiment()
    exp.add_stage("a", loaders=dict(LOADERS), callbacks={"tracker": Tracker()})
    exp.add_stage("b", loaders=dict(LOADERS))
    exp.add_stage("c", after=["a"], loaders=dict(LOADERS))
    source = full(sg.compile(exp, verbose=False))
    edges = {ln.split(" [")[0].strip(): ln for ln in source.splitlines() if ln.startswith("\ts")}
    assert set(edges) >= {"s0 -> s1", "s0 -> s2"}
    assert 'tooltip="migrates: tracker"' in edges["s0 -> s2"]
    assert "label=" not in edges["s0 -> s1"] + edges["s0 -> s2"]
    if shutil.which("dot") is not None:
        drawing = to_graphviz(sg.compile(exp, verbose=False)).pipe(format="svg").decode()
        assert crossed_labels(drawing) == [] and edges_drawn_twice(drawing) == []


def test_a_stage_edge_without_migration_is_grey() -> None:
    exp = small().experiment_object
    exp.stages[1].params["migrate_from_previous_stage"] = False
    source = full(sg.compile(exp, verbose=False))
    assert '\ts0 -> s1 [color="#555555" minlen=0 penwidth=2 weight=10]\n' in source
    assert "migrates:" not in source


def test_stages_without_an_edge_keep_run_order() -> None:
    exp = experiment()
    exp.add_stage("a", loaders=dict(LOADERS))
    exp.add_stage("b", after=[], loaders=dict(LOADERS))
    source = full(sg.compile(exp, verbose=False))
    assert "\ts0 -> s1 [minlen=0 style=invis weight=10]" in source


def test_edges_are_labelled_with_their_reason() -> None:
    plan = small()
    stage = plan.stage("pretrain")
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(stage.callbacks, 1)}
    source = full(plan)
    assert (f'{ids["accuracy"]} -> {ids["report"]} [label=after color="#222222" '
            "tooltip=\"'report' declares after='accuracy'\"]") in source
    assert (f'{ids["criterion"]} -> {ids["optimizer"]} [label="metric.loss" color="#1a5fb4" '
            'fontcolor="#1a5fb4"') in source


def test_inversions_are_bold_red() -> None:
    plan = small()
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(plan.stage("pretrain").callbacks, 1)}
    source = full(plan)
    assert (f'{ids["writer"]} -> {ids["reader"]} [label="overrides order buckets\\n'
            'metric.custom" color="#d00000" fontcolor="#d00000" penwidth=2.5 style=bold') in source


def test_node_styles_show_origin_scope_and_node() -> None:
    plan = small()
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(plan.stage("pretrain").callbacks, 1)}
    source = full(plan)
    tracker = node_line(source, ids["tracker"])
    assert 'fillcolor="#dbe8fb"' in tracker and "peripheries=2" in tracker
    assert "experiment scope" in tracker
    report = node_line(source, ids["report"])
    assert "[master]" in report and 'color="#c05800"' in report and "penwidth=2.5" in report
    migrated = [ln for ln in source.splitlines() if "migrated from pretrain" in ln]
    assert len(migrated) == 1 and 'fillcolor="#d9f2dd"' in migrated[0]
    criterion = [ln for ln in source.splitlines() if "CriterionCallback · Metric (20)" in ln]
    assert all("default" in ln and 'fillcolor="#eeeeee"' in ln for ln in criterion)


def test_rank_filter_is_drawn() -> None:
    exp = small().experiment_object
    worker = sg.compile(exp, rank="worker", verbose=False)
    source = to_graphviz(worker).source
    assert "[master]" not in "".join(ln for ln in source.splitlines() if "legend" not in ln)
    assert "rank worker" in source


ODD = ['say "hi"', "naïve ✓ 名前", "back\\slash", "colon:port", "<html>", "node", "a b"]


def odd_plan() -> sg.ExecutionPlan:
    exp = sg.Experiment('exp "quoted"', model=object(), criterion=object())
    exp.add_stage('stage "1" é', loaders=dict(LOADERS),
                  callbacks={name: Plain() for name in ODD})
    exp.add_stage("two words", loaders=dict(LOADERS), callbacks={"<html>": Plain()})
    return sg.compile(exp, verbose=False)


def test_odd_names_only_appear_escaped_inside_labels() -> None:
    plan = odd_plan()
    source = to_graphviz(plan).source
    assert 'label="stage 1: stage \\"1\\" é"' in source
    assert '[label="1. say \\"hi\\"\\n' in source
    assert '[label="3. back\\\\slash\\n' in source
    assert '[label="5. <html>\\n' in source
    ids = re.findall(r"^\t+(\S+) \[label=", source, flags=re.M)
    assert all(re.fullmatch(r"s\d+(_[ch]\d+|_note)?|legend", i) for i in ids)
    assert len(ids) == len(set(ids))


@needs_dot
def test_odd_names_render_through_dot() -> None:
    svg = to_graphviz(odd_plan()).pipe(format="svg").decode("utf-8")
    assert "say &quot;hi&quot;" in svg and "naïve ✓ 名前" in svg
    assert "back\\slash" in svg and "&lt;html&gt;" in svg


@needs_dot
def test_renders_svg_through_dot() -> None:
    svg = small().to_graphviz().pipe(format="svg").decode("utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "cluster_s0" in svg and "migrates:" in svg and "legend" in svg


def test_broken_plans_still_render() -> None:
    exp = experiment()
    exp.add_stage("a", after=["b"], loaders=dict(LOADERS),
                  callbacks={"x": Plain(after=["y"]), "y": Plain(after=["x"])})
    exp.add_stage("b", after=["a"], loaders=dict(LOADERS))
    plan = sg.compile(exp)
    assert {"SF201", "SF402"} <= {d.code for d in plan.diagnostics}
    for detail in ("compact", "full"):
        source = to_graphviz(plan, detail=detail).source
        assert "2 error(s)" in source
        assert "\ts0 -> s1 [" in source and "\ts1 -> s0 [" in source  # both stage edges
        # A cycle is an error: the compact drawing leaves out none of its edges.
        assert "\t\ts0_c1 -> s0_c2 [label=after" in source
        assert "\t\ts0_c2 -> s0_c1 [label=after" in source
    if shutil.which("dot") is not None:
        assert "<svg" in to_graphviz(plan).pipe(format="svg").decode("utf-8")


def test_pure_and_same_for_a_plan_read_from_json() -> None:
    plan = small()
    again = sg.ExecutionPlan.model_validate_json(plan.to_json())
    assert to_graphviz(plan).source == to_graphviz(plan).source == to_graphviz(again).source
    assert plan.to_graphviz().source == to_graphviz(plan).source


def test_rendering_does_not_import_torch() -> None:
    tests = Path(__file__).parent.parent
    code = (f"import sys\nsys.path[:0] = [{str(tests)!r}, {str(tests / 'compiler')!r}]\n"
            "from test_render import small\n"
            "small().to_graphviz().source\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
