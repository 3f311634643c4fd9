"""`stagegraph validate | plan | explain | schema`: output and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import INVALID, VALID, cli

import stagegraph as sg
from stagegraph.loading import load_experiment

INVALID_CODES = {"SF107", "SF202", "SF401", "SF402", "SF503", "SF504"}


# --- validate --------------------------------------------------------------------------------
def test_validate_valid_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", VALID)
    assert result.code == 0
    assert result.out == "ok: experiment 'fixture' has no problems (3 stage(s), 17 callback(s))\n"


def test_validate_prints_every_diagnostic_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", INVALID)
    assert result.code == 1
    lines = result.out.splitlines()
    heads = [line for line in lines if not line.startswith("  ")]
    assert {h.split("]")[0].split("[")[1] for h in heads[:-1]} == INVALID_CODES
    assert ("error[SF202] stage 'finetune' > param 'after': stage 'finetune' follows unknown "
            "stage 'trian'. Did you mean 'train'?") in lines
    assert "  hint: stages are: 'train', 'finetune'" in lines
    assert any(h.startswith("error[SF107] stage 'train' > callback 'a': ") for h in heads)
    assert lines[-1] == ("experiment 'broken' has errors: 8 error(s), 0 warning(s) "
                         "(2 stage(s), 13 callback(s))")


def test_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", INVALID, "--format", "json")
    assert result.code == 1
    items = json.loads(result.out)
    assert {d["code"] for d in items} == INVALID_CODES
    first = items[0]
    assert set(first) == {"code", "severity", "location", "message", "hint", "default_level"}
    assert [(d["code"], d["severity"], d["default_level"]) for d in items if d["code"] == "SF504"
            ] == [("SF504", "error", "error")]
    assert [sg.Diagnostic.model_validate({k: v for k, v in d.items() if k != "default_level"})
            for d in items] == list(
        sg.compile(load_experiment(INVALID)).diagnostics)


def test_validate_json_of_a_valid_experiment_is_an_empty_list(
        capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", VALID, "--format", "json")
    assert (result.code, json.loads(result.out)) == (0, [])


def test_validate_passes_device_to_the_compiler(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", VALID, "--device", "tpu")
    assert result.code == 1
    assert "error[SF108] param 'device': device 'tpu' is not one stagegraph knows" in result.out


# --- plan ------------------------------------------------------------------------------------
def test_plan_prints_the_text_plan(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "plan", VALID)
    assert result.code == 0
    assert result.out == str(sg.compile(load_experiment(VALID))) + "\n"
    assert "stage 1/3 'pretrain': 2 epoch(s)" in result.out
    assert "exp_valid.Accuracy" not in result.out  # the text form shows short type names


def test_plan_with_errors_still_prints_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "plan", INVALID)
    assert result.code == 1
    assert "stage 1/2 'train'" in result.out
    assert "diagnostics (8 error(s), 0 warning(s)):" in result.out


@pytest.mark.parametrize(("rank", "has_report"), [("single", True), ("master", True),
                                                  ("worker", False)])
def test_plan_rank(capsys: pytest.CaptureFixture[str], rank: str, has_report: bool) -> None:
    result = cli(capsys, "plan", VALID, "--rank", rank)
    assert result.code == 0
    assert f"rank {rank}" in result.out.splitlines()[0]
    assert (" report " in result.out) is has_report  # 'report' is a master-only callback


def test_plan_logdir_adds_checkpoints(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    result = cli(capsys, "plan", VALID, "--logdir", str(tmp_path / "run"))
    assert "checkpoint" in result.out and "csv_logger" in result.out
    assert "checkpoint" not in cli(capsys, "plan", VALID).out


@pytest.mark.parametrize("suffix", [".dot", ".gv"])
def test_plan_writes_dot(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                         suffix: str) -> None:
    out = tmp_path / f"plan{suffix}"
    result = cli(capsys, "plan", VALID, "-o", str(out))
    assert result.code == 0
    assert result.out.startswith(f"wrote {out}; ok:")
    source = out.read_text(encoding="utf-8")
    assert source == sg.compile(load_experiment(VALID)).to_graphviz().source
    assert source.startswith("digraph plan {") and "subgraph cluster_s2" in source


def test_plan_writes_json_that_round_trips(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    assert cli(capsys, "plan", VALID, "-o", str(out)).code == 0
    plan = sg.ExecutionPlan.model_validate_json(out.read_text(encoding="utf-8"))
    assert plan.hash == sg.compile(load_experiment(VALID)).hash
    assert [s.name for s in plan.stages] == ["pretrain", "finetune", "infer"]
    assert plan.stage("pretrain").callback("accuracy").type == "exp_valid.Accuracy"


def test_plan_with_errors_is_written_and_exits_1(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = cli(capsys, "plan", INVALID, "-o", str(out))
    assert result.code == 1
    assert len(sg.ExecutionPlan.model_validate_json(out.read_text()).errors) == 8
    assert "error[SF402]" in result.err


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="the Graphviz `dot` binary is not installed (CI installs it)")
@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<svg"), (".png", b"\x89PNG")])
def test_plan_draws_through_dot(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                suffix: str, magic: bytes) -> None:
    out = tmp_path / f"plan{suffix}"
    assert cli(capsys, "plan", VALID, "-o", str(out)).code == 0
    assert magic in out.read_bytes()[:400]


def test_plan_without_dot_names_the_missing_binary(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = cli(capsys, "plan", VALID, "-o", str(tmp_path / "plan.svg"))
    assert result.code == 1
    assert "the Graphviz `dot` binary was not found on PATH" in result.err
    assert "apt-get install graphviz" in result.err
    assert not (tmp_path / "plan.svg").exists()


def test_plan_unknown_suffix_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    result = cli(capsys, "plan", VALID, "-o", str(tmp_path / "plan.txt"))
    assert result.code == 2
    assert "use a file ending in .svg, .png, .dot, .gv, .json" in result.err


def test_plan_makes_missing_folders(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "runs" / "new" / "plan.json"
    assert cli(capsys, "plan", VALID, "-o", str(out)).code == 0
    assert out.is_file()


def test_plan_unwritable_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    result = cli(capsys, "plan", VALID, "-o", str(tmp_path / "a_file" / "plan.json"))
    assert result.code == 1
    assert "cannot write" in result.err and "Traceback" not in result.text


# --- explain ---------------------------------------------------------------------------------
def test_explain_before(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "explain", VALID, "--stage", "pretrain", "accuracy", "report")
    assert result.code == 0
    assert result.out.splitlines() == [
        "in stage 'pretrain', 'accuracy' runs before 'report':",
        "  accuracy -> report: 'accuracy' writes 'metric.accuracy', which 'report' reads "
        "(dataflow)  [overrides order buckets: Metric (20) before Internal (0)]",
    ]


def test_explain_after_and_unordered(capsys: pytest.CaptureFixture[str]) -> None:
    after = cli(capsys, "explain", VALID, "--stage", "pretrain", "optimizer", "criterion")
    assert after.code == 0
    assert after.out.startswith("in stage 'pretrain', 'criterion' runs before 'optimizer':")
    unordered = cli(capsys, "explain", VALID, "--stage", "pretrain", "tracker", "report")
    assert unordered.code == 0
    assert "no chain of hard edges orders 'tracker' and 'report'" in unordered.out


@pytest.mark.parametrize(("stage", "a", "b", "message"), [
    ("pretrian", "accuracy", "report", "plan has no stage 'pretrian'; stages: 'pretrain'"),
    ("pretrain", "accuracy", "nope", "stage 'pretrain' has no callback 'nope'"),
])
def test_explain_unknown(capsys: pytest.CaptureFixture[str], stage: str, a: str, b: str,
                         message: str) -> None:
    result = cli(capsys, "explain", VALID, "--stage", stage, a, b)
    assert result.code == 1
    assert result.out.startswith(message)


def test_explain_notes_errors_in_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "explain", INVALID, "--stage", "train", "criterion", "validation")
    assert result.code == 0
    assert "note: the plan has 8 error(s)" in result.err


# --- schema and usage ------------------------------------------------------------------------
def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert schema == sg.ExecutionPlan.model_json_schema()
    assert schema["title"] == "ExecutionPlan" and "StagePlan" in schema["$defs"]


@pytest.mark.parametrize("args", [
    (), ("frobnicate",), ("validate",), ("explain", VALID, "a", "b"),
    ("validate", VALID, "--format", "yaml"), ("plan", VALID, "--rank", "boss"),
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    result = cli(capsys, *args)
    assert result.code == 2
    assert "usage: stagegraph" in result.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "--version")
    assert (result.code, result.out) == (0, f"stagegraph {sg.__version__}\n")
