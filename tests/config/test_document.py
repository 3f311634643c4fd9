"""Reading a config file: every key and value keeps its line and column (config/document.py)."""

from __future__ import annotations

from pathlib import Path

from config_helpers import write

from stagegraph.config.document import read_document
from stagegraph.config.problems import Position, Problems


def read(tmp_path: Path, text: str, name: str = "exp.yaml") -> tuple[object, Problems]:
    problems = Problems()
    return read_document(str(write(tmp_path, text, name)), problems), problems


def test_keys_and_values_keep_their_positions(tmp_path: Path) -> None:
    document, problems = read(tmp_path, """
        experiment: demo
        stages:
          train:
            num_epochs: 3
            callbacks: {acc: {_target_: AccuracyCallback, topk: [1, 3]}}
        """)
    assert not problems.items and document is not None
    file = str(tmp_path / "exp.yaml")
    assert document.keys[("stages", "train", "num_epochs")] == Position(file, 4, 5)
    assert document.values[("stages", "train", "num_epochs")] == Position(file, 4, 17)
    assert document.values[("stages", "train", "callbacks", "acc", "topk", 1)] == Position(
        file, 5, 61)
    assert document.key_at(("stages", "train", "main_metric")) == Position(file, 3, 3)


def test_plain_values_as_yaml_1_2_and_json_read_them(tmp_path: Path) -> None:
    document, _ = read(tmp_path, """
        lr: 1e-3
        big: 1E5
        day: 2024-01-01
        on: yes
        1: true
        """)
    assert document is not None
    assert document.data == {"lr": 0.001, "big": 100000.0, "day": "2024-01-01", "on": "yes",
                             "1": True}


def test_anchors_aliases_and_merge_keys(tmp_path: Path) -> None:
    document, problems = read(tmp_path, """
        base: &base
          num_epochs: 3
          main_metric: accuracy
        stages:
          train:
            <<: *base
            num_epochs: 5
          again: *base
        """)
    assert not problems.items and document is not None
    assert document.data["stages"] == {
        "train": {"num_epochs": 5, "main_metric": "accuracy"},
        "again": {"num_epochs": 3, "main_metric": "accuracy"}}
    file = str(tmp_path / "exp.yaml")
    # A merged key is where the anchor writes it; the stage's own where the stage does.
    assert document.keys[("stages", "train", "main_metric")] == Position(file, 3, 3)
    assert document.keys[("stages", "train", "num_epochs")] == Position(file, 7, 5)


def test_a_key_written_twice_is_an_error_at_the_second(tmp_path: Path) -> None:
    _, problems = read(tmp_path, """
        experiment: demo
        seed: 1
        seed: 2
        """)
    assert [p.where for p in problems.items] == [f"{tmp_path}/exp.yaml:3:1"]
    assert problems.items[0].code == "SF802"
    assert "first at line 2" in problems.items[0].message


def test_a_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    document, problems = read(tmp_path, """
        experiment: demo
        stages:
          train: {num_epochs: 3
        """)
    assert document is None
    (problem,) = problems.items
    assert problem.code == "SF801" and problem.line == 4 and "YAML syntax error" in problem.message


def test_a_tab_gets_a_hint(tmp_path: Path) -> None:
    _, problems = read(tmp_path, "experiment: demo\nstages:\n\ttrain: {}\n")
    (problem,) = problems.items
    assert (problem.code, problem.line, problem.column) == ("SF801", 3, 1)
    assert problem.hint == "YAML indents with spaces, not tabs"


def test_a_tag_is_refused_where_it_is(tmp_path: Path) -> None:
    _, problems = read(tmp_path, "experiment: !!python/name:os.system x\n")
    (problem,) = problems.items
    assert (problem.code, problem.line, problem.column) == ("SF801", 1, 13)


def test_json_is_read_with_positions_and_its_errors_located(tmp_path: Path) -> None:
    document, problems = read(tmp_path, '{\n\t"experiment": "demo",\n  "seed": 1e2\n}\n',
                              name="exp.json")
    assert not problems.items and document is not None
    assert document.data == {"experiment": "demo", "seed": 100.0}
    assert document.values[("seed",)] == Position(str(tmp_path / "exp.json"), 3, 11)
    _, problems = read(tmp_path, '{\n  "experiment": "demo",\n  "seed": 1,\n}\n',
                       name="bad.json")
    (problem,) = problems.items
    assert (problem.code, problem.line, problem.column) == ("SF801", 4, 1)
    assert problem.message.startswith("JSON syntax error")


def test_a_value_that_contains_itself_is_an_error(tmp_path: Path) -> None:
    _, problems = read(tmp_path, "a: &a [1, *a]\n")
    assert [p.code for p in problems.items] == ["SF801"]
