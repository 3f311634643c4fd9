"""The compact drawing (the default): hubs, implied edges left out, one legend, one stage alone,
and the digits plan's size and labels through the real `dot`."""

from __future__ import annotations

import functools
import re
import runpy
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import LOADERS, Plain, experiment
from svg_geometry import crossed_labels, edges_drawn_twice, size_px
from test_render import small

import stagegraph as sg
from stagegraph.compiler.render import to_graphviz

DIGITS = Path(__file__).parent.parent.parent / "examples" / "digits.py"
# `stagegraph plan examples/digits.py -o plan.svg` before the compact drawing: 1184 x 2368 pt,
# that is 1579 x 3157 px at 96 px per 72 pt (the author measured 1869 x 5315 px).
BEFORE_HEIGHT_PX = 2368 * 96 / 72

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="the Graphviz `dot` binary is not installed (CI installs it)")
EDGE = re.compile(r"^\t+(\w+) -> (\w+) \[(.*)\]$", re.M)


@functools.cache
def digits(logdir: str | None = None) -> sg.ExecutionPlan:
    """The README's four-stage plan, as `stagegraph plan examples/digits.py` compiles it."""
    exp = runpy.run_path(str(DIGITS))["build"]()
    return sg.compile(exp, logdir=logdir, verbose=True)


def drawn(source: str) -> list[tuple[str, str]]:
    """The visible edges of DOT text, as (tail, head)."""
    return [(m[1], m[2]) for m in EDGE.finditer(source) if "style=invis" not in m[3]]


def test_digits_compact_edge_count() -> None:
    compact, full = (drawn(to_graphviz(digits(), detail=d).source)
                     for d in ("compact", "full"))
    # 3 stage edges; pretrain and finetune 6 callback edges each, train 9. Full detail adds
    # the epoch metrics' edges to each console, which validation's valid.* already orders.
    assert len(compact) == 24
    assert len(full) == 30
    assert set(compact) < set(full)


def test_digits_with_a_logdir_bundles_the_epoch_metrics_through_a_hub() -> None:
    plan = digits(logdir="runs/digits")
    source = to_graphviz(plan).source
    # 3 stage edges and 29 in the stages. Per training stage, 2 edges into the hub and 2 out
    # of it stand for metric_aggregation and optimizer to validation and csv_logger; full
    # detail also draws their edges to the console, which validation's valid.* implies.
    assert len(drawn(source)) == 32
    assert len(drawn(to_graphviz(plan, detail="full").source)) == 38
    for stage in ("s0", "s1", "s2"):  # the training stages; infer has no dataflow edges
        hub = f"{stage}_h1"
        assert f'\t\t{hub} [label="epoch_metric.*"' in source
        into = sorted(t for t, h in drawn(source) if h == hub)
        out = sorted(h for t, h in drawn(source) if t == hub)
        ids = {cb.name: f"{stage}_c{i}" for i, cb in
               enumerate(plan.stages[int(stage[1:])].callbacks, 1)}
        assert into == sorted([ids["metric_aggregation"], ids["optimizer"]])
        assert out == sorted([ids["validation"], ids["csv_logger"]])
    assert "s3_h" not in source and "hub: its writers run before its readers" in source


def test_implied_edges_are_left_out_but_overrides_stay() -> None:
    plan = small()
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(plan.stage("pretrain").callbacks, 1)}
    compact = drawn(to_graphviz(plan).source)
    full = drawn(to_graphviz(plan, detail="full").source)
    # An edge that overrides the order buckets is drawn whatever else orders its ends.
    assert plan.stage("pretrain").inversions
    for inverted in plan.stage("pretrain").inversions:
        assert (ids[inverted.source], ids[inverted.target]) in compact
    assert set(compact) <= set(full) and len(compact) <= len(full)


def test_an_edge_a_chain_implies_is_only_in_full() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "a": Plain(order=0), "b": Plain(order=0, after=["a"]),
        "c": Plain(order=0, after=["a", "b"])})
    plan = sg.compile(exp, verbose=False)
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(plan.stage("train").callbacks, 1)}
    a_to_c = (ids["a"], ids["c"])
    assert a_to_c in drawn(to_graphviz(plan, detail="full").source)
    assert a_to_c not in drawn(to_graphviz(plan).source)


def test_a_hub_feeds_only_the_readers_of_every_writer() -> None:
    exp = experiment()
    logging = sg.CallbackOrder.Logging
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "all_1": Plain(order=logging, reads=["epoch_metric.*"]),
        "all_2": Plain(order=logging, reads=["epoch_metric.*"]),
        "lr_only": Plain(order=logging, reads=["epoch_metric.lr"])})
    plan = sg.compile(exp, verbose=False)
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(plan.stage("train").callbacks, 1)}
    source = to_graphviz(plan).source
    edges = drawn(source)
    assert '\t\ts0_h1 [label="epoch_metric.*"' in source and "s0_h2" not in source
    assert sorted(t for t, h in edges if h == "s0_h1") == sorted(
        [ids["metric_aggregation"], ids["optimizer"]])
    assert sorted(h for t, h in edges if t == "s0_h1") == sorted(
        [ids["validation"], ids["all_1"], ids["all_2"]])
    assert ('tooltip="epoch_metric.*: written by metric_aggregation, optimizer; read by '
            'validation, all_1, all_2"') in source  # in plan order
    assert (ids["optimizer"], ids["lr_only"]) in edges  # one writer: drawn directly
    assert f'{ids["optimizer"]} -> {ids["lr_only"]} [label="epoch_metric.lr"' in source


def test_an_implied_edge_that_overrides_the_buckets_stays() -> None:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "a": Plain(order=100, writes=["metric.k"]), "b": Plain(order=100, after=["a"]),
        "c": Plain(order=0, reads=["metric.k"], after=["b"])})
    plan = sg.compile(exp, verbose=False)
    stage = plan.stage("train")
    ids = {cb.name: f"s0_c{i}" for i, cb in enumerate(stage.callbacks, 1)}
    assert ("a", "c") in {(e.source, e.target) for e in stage.inversions}
    compact = drawn(to_graphviz(plan).source)
    assert {(ids["a"], ids["b"]), (ids["b"], ids["c"]), (ids["a"], ids["c"])} <= set(compact)


def test_the_legend_is_drawn_once_outside_every_stage() -> None:
    for source in (to_graphviz(digits()).source, to_graphviz(digits(), stage="train").source,
                   to_graphviz(small(), detail="full").source):
        assert source.count("\tlegend [label=<") == 1
        assert "cluster_legend" not in source and "legend_" not in source
        assert not [e for e in drawn(source) if "legend" in e]  # no arrows, only glyphs


def test_one_stage_alone() -> None:
    plan = small()
    source = to_graphviz(plan, stage="finetune").source
    assert re.findall(r"subgraph (cluster_\w+)", source) == ["cluster_s1"]
    assert "stage 2: finetune" in source and "stage 1: pretrain" not in source
    assert "stage 'finetune' alone" in source
    assert not [e for e in drawn(source) if e[0] in ("s0", "s1")]  # no stage edges


@pytest.mark.parametrize(("name", "hint"), [("trian", " Did you mean 'train'?"),
                                            ("nope", "")])
def test_an_unknown_stage_lists_the_stages(name: str, hint: str) -> None:
    with pytest.raises(ValueError) as error:
        to_graphviz(digits(), stage=name)
    assert str(error.value) == (
        f"experiment 'digits' has no stage {name!r} to draw; its stages: 'pretrain', 'train', "
        f"'finetune', 'infer'.{hint}")


def test_an_unknown_detail_is_an_error() -> None:
    with pytest.raises(ValueError, match="detail 'fulll': use one of compact, full"):
        to_graphviz(small(), detail="fulll")  # type: ignore[arg-type]


def test_stages_wrap_into_rows() -> None:
    exp = experiment()
    for name in "abcde":
        exp.add_stage(name, loaders=dict(LOADERS))
    source = to_graphviz(sg.compile(exp, verbose=False), columns=2).source
    # c starts the second row below a, e the third below c: an invisible edge from the last
    # callback of the stage above; stage edges between rows are not flat.
    for above, below in (("s0", "s2"), ("s1", "s3"), ("s2", "s4")):
        assert re.search(rf"\t{above}_c\d+ -> {below} \[style=invis\]", source)
    assert "\ts1 -> s2 [color=\"#555555\" penwidth=2]" in source
    assert "\ts0 -> s1 [color=\"#555555\" minlen=0 penwidth=2 weight=10]" in source


def svg(plan: sg.ExecutionPlan, **options: Any) -> str:
    return to_graphviz(plan, **options).pipe(format="svg").decode("utf-8")


@needs_dot
def test_digits_default_svg_fits_the_screen() -> None:
    width, height = size_px(svg(digits()))
    assert width <= 1600 and height <= BEFORE_HEIGHT_PX / 2, (width, height)
    width, height = size_px(svg(digits(logdir="runs/digits")))
    assert width <= 1600 and height <= BEFORE_HEIGHT_PX / 2, (width, height)


@needs_dot
@pytest.mark.parametrize("options", [{}, {"detail": "full"}, {"stage": "train"}])
def test_no_edge_crosses_a_label(options: dict[str, str]) -> None:
    for plan in (digits(), digits(logdir="runs/digits"), small()):
        if options.get("stage") and options["stage"] not in [s.name for s in plan.stages]:
            continue
        drawing = svg(plan, **options)
        assert crossed_labels(drawing) == []
        assert edges_drawn_twice(drawing) == []
