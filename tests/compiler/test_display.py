"""`display`: the Markdown and HTML notebooks show for plans, stages, explanations, diagnostics."""

from __future__ import annotations

import graphviz
import pytest
from conftest import LOADERS, Metric, Plain, experiment

import stagegraph as sg
from stagegraph.compiler.diagnostics import Diagnostic, DiagnosticList, Location, Severity
from stagegraph.compiler.display import Bold, Code, Items, Para, Table, to_html, to_markdown
from stagegraph.compiler.plan import ExecutionPlan


def plan(**compile_options: object) -> sg.ExecutionPlan:
    exp = experiment()
    exp.add_stage("train", loaders=dict(LOADERS), callbacks={
        "acc": Metric(),
        "report": Plain(order=0, reads=["valid.metrics"]),
    })
    return sg.compile(exp, verbose=False, **compile_options)  # type: ignore[arg-type]


def test_markdown_escapes_text_and_keeps_code_literal() -> None:
    blocks = [Para(("reads ", Code("metric.*"), " and metric.* <b>&", " ", Bold("x_y"))),
              Items((("a|b",),)),
              Table(("#", "key"), ((("1",), (Code("a|b"),)),))]
    assert to_markdown(blocks) == (
        "reads `metric.*` and metric.\\* &lt;b&gt;&amp; **x\\_y**\n\n"
        "- a\\|b\n\n"
        "| \\# | key |\n|---|---|\n| 1 | `a\\|b` |\n")


def test_html_escapes_every_value() -> None:
    blocks = [Para(("<script>", Code("'x' & y"), Bold("<i>"))),
              Table(("<h>",), (((Code("<c>"),),),))]
    left = ' style="text-align:left"'
    assert to_html(blocks) == (
        '<div class="stagegraph">\n'
        "<p>&lt;script&gt;<code>&#x27;x&#x27; &amp; y</code><strong>&lt;i&gt;</strong></p>\n"
        f"<table><thead><tr><th{left}>&lt;h&gt;</th></tr></thead>"
        f"<tbody><tr><td{left}><code>&lt;c&gt;</code></td></tr></tbody></table>\n</div>")


def test_an_explanation_lists_its_chain_with_the_inversion_note() -> None:
    answer = plan().explain("train", "report", "validation")
    lines = answer._repr_markdown_().splitlines()
    assert lines[0] == ("`validation` **runs before** `report` in stage `train`, through 1 hard "
                        "edge(s):")
    assert lines[2:4] == ["| step | from | to | kind | why | note |", "|---|---|---|---|---|---|"]
    assert lines[4].startswith("| 1 | `validation` | `report` | dataflow | 'validation' writes ")
    assert lines[4].endswith(" | overrides order buckets: Validation (80) before Internal (0) |")
    assert "<td style=\"text-align:left\"><code>report</code></td>" in answer._repr_html_()


def test_unordered_and_unknown_explanations_list_the_reasons() -> None:
    unordered = plan().explain("train", "acc", "criterion")._repr_markdown_()
    assert unordered.startswith("`acc` and `criterion` **are not ordered** by any chain of hard "
                                "edges in stage `train`:\n\n- the plan runs 'acc' first")
    unknown = plan().explain("train", "acc", "nope")._repr_markdown_()
    assert unknown.startswith("**cannot explain** `acc` and `nope` in stage `train`:\n\n"
                              "- stage 'train' has no callback 'nope'; callbacks: 'acc', ")
    assert "<ul><li>stage &#x27;train&#x27; has no callback &#x27;nope&#x27;" in (
        plan().explain("train", "acc", "nope")._repr_html_())


def test_a_stage_shows_settings_and_callbacks_in_order() -> None:
    stage = plan().stage("train")
    markdown = stage._repr_markdown_()
    assert markdown.startswith("**Stage 1** `train`: ")
    assert "- loaders: `train` (train), `valid` (valid)\n" in markdown
    names = [line.split(" | ")[1] for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert names == [f"`{cb.name}`" for cb in stage.callbacks]
    assert "<th style=\"text-align:left\">origin</th>" in stage._repr_html_()


def test_diagnostics_are_a_tuple_that_displays_as_a_table() -> None:
    compiled = plan(logdir=None)
    note = Diagnostic(code="SF999", severity=Severity.warning, location=Location(stage="train"),
                      message="a <note>, run `stagegraph validate`", hint="a lone ` stays")
    diagnostics = DiagnosticList((note,))
    assert diagnostics == (note,) and diagnostics[:1] == (note,) and type(diagnostics[:1]) is tuple
    assert str(diagnostics) == str((note,))  # prints as it always did
    assert diagnostics._repr_markdown_() == (
        "**1 diagnostic(s)**: 0 error(s), 1 warning(s), 0 info\n\n"
        "| severity | code | where | message | hint |\n|---|---|---|---|---|\n"
        "| warning | `SF999` | stage 'train' | a &lt;note&gt;, run `stagegraph validate` | "
        "a lone \\` stays |\n")
    assert ("<td style=\"text-align:left\">a &lt;note&gt;, run <code>stagegraph validate</code>"
            "</td>") in diagnostics._repr_html_()
    assert isinstance(compiled.diagnostics, DiagnosticList)
    assert isinstance(compiled.errors, DiagnosticList) and compiled.errors == ()
    assert DiagnosticList()._repr_markdown_() == "No diagnostics: the plan is clean.\n"


def test_a_plan_read_from_json_keeps_its_diagnostic_list() -> None:
    compiled = plan()
    noted = compiled.model_copy(update={"diagnostics": DiagnosticList((Diagnostic(
        code="SF999", severity=Severity.info, location=Location(), message="m"),))})
    read = ExecutionPlan.model_validate_json(noted.to_json())
    assert type(read.diagnostics) is DiagnosticList and read == noted


def test_a_plan_displays_a_summary_and_the_diagram(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = plan()
    bundle = compiled._repr_mimebundle_()
    assert bundle["text/plain"] == str(compiled)
    assert bundle["text/markdown"].startswith("Plan for experiment `test`: 1 stage(s), seed ")
    assert "| 1 | `train` |   | 1 | " in bundle["text/markdown"]
    assert set(compiled._repr_mimebundle_(include=["text/html"])) == {"text/html"}
    assert set(compiled._repr_mimebundle_(include=["text/plain"])) == {"text/plain"}
    assert "text/html" not in compiled._repr_mimebundle_(exclude=["text/html"])

    def no_dot(*args: object, **kwargs: object) -> str:
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(graphviz.Digraph, "pipe", no_dot)
    bundle = compiled._repr_mimebundle_()
    assert "image/svg+xml" not in bundle and "<svg" not in bundle["text/html"]
