"""`stagegraph plan -o FILE --stage NAME --detail compact|full`: what the drawing holds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from cli_helpers import VALID, cli

EDGE = re.compile(r"^\t+(\w+) -> (\w+) \[(.*)\]$", re.M)


def visible_edges(source: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in EDGE.finditer(source) if "style=invis" not in m[3]]


def draw(capsys: pytest.CaptureFixture[str], tmp_path: Path, *options: str) -> str:
    out = tmp_path / "plan.dot"
    result = cli(capsys, "plan", VALID, "-o", str(out), *options)
    assert result.code == 0, result.err
    return out.read_text(encoding="utf-8")


def test_stage_draws_one_cluster(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = draw(capsys, tmp_path, "--stage", "finetune")
    assert re.findall(r"subgraph (cluster_\w+)", source) == ["cluster_s1"]
    assert "stage 2: finetune" in source and "stage 'finetune' alone" in source
    assert source.count("\tlegend [label=<") == 1


def test_full_detail_draws_more_edges(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    compact = visible_edges(draw(capsys, tmp_path))
    assert compact == visible_edges(draw(capsys, tmp_path, "--detail", "compact"))
    full = visible_edges(draw(capsys, tmp_path, "--detail", "full"))
    assert set(compact) < set(full)


def test_an_unknown_stage_lists_the_stages(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    out = tmp_path / "new" / "plan.svg"
    result = cli(capsys, "plan", VALID, "-o", str(out), "--stage", "fintune")
    assert result.code == 1
    assert result.err == ("error: experiment 'fixture' has no stage 'fintune' to draw; its "
                          "stages: 'pretrain', 'finetune', 'infer'. Did you mean 'finetune'?\n")
    assert result.out == "" and not out.parent.exists()


@pytest.mark.parametrize("output", [(), ("-o", "plan.json")])
@pytest.mark.parametrize("option", [("--stage", "finetune"), ("--detail", "full")])
def test_drawing_options_need_a_drawing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        output: tuple[str, ...], option: tuple[str, ...]) -> None:
    args = [a if a != "plan.json" else str(tmp_path / a) for a in output]
    result = cli(capsys, "plan", VALID, *args, *option)
    assert result.code == 2 and result.out == ""
    assert result.err == ("error: --stage and --detail shape the drawing: give -o plan.svg "
                          "(or .png, .dot)\n")
    assert not (tmp_path / "plan.json").exists()


def test_an_unknown_detail_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "plan", VALID, "-o", "plan.svg", "--detail", "fulll")
    assert result.code == 2
    assert "argument --detail: invalid choice: 'fulll' (choose from" in result.err


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="the Graphviz `dot` binary is not installed (CI installs it)")
def test_one_stage_svg(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "pretrain.svg"
    assert cli(capsys, "plan", VALID, "-o", str(out), "--stage", "pretrain").code == 0
    svg = out.read_text(encoding="utf-8")
    assert "stage 1: pretrain" in svg and "stage 2: finetune" not in svg
