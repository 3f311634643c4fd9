"""What the commands print: only their output on stdout, whatever the experiment file prints
while it loads, and any text on a terminal whose encoding cannot show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli, command

CHATTY = '''import stagegraph as sg

print("loading the chatty experiment")


def experiment() -> sg.Experiment:
    print("building it")
    exp = sg.Experiment("chatty", model=object(), criterion=object(), optimizer=object())
    exp.add_stage("train", loaders={"train": [], "valid": [], "holdout": []})
    return exp
'''

ACCENTED = '''import stagegraph as sg

print("chargement de l'\\u00e9tape")
experiment = sg.Experiment("\\u00e9tapes", model=object(), criterion=object(), optimizer=object())
experiment.add_stage("\\u00e9tape", loaders={"train": [], "valid": [], "holdout": []})
'''


def test_json_stays_json_when_the_experiment_prints(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    path = tmp_path / "sg_chatty.py"
    path.write_text(CHATTY)
    result = cli(capsys, "validate", str(path), "--format", "json")
    assert result.code == 0
    assert [item["code"] for item in json.loads(result.out)] == ["SF506"]
    assert result.err == "loading the chatty experiment\nbuilding it\n"


def test_a_load_error_as_json_stays_json_when_the_experiment_prints(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "sg_chatty_fails.py"
    path.write_text("print('about to fail')\nraise ValueError('no data')\n")
    result = cli(capsys, "validate", str(path), "--format", "json")
    assert result.code == 1
    assert [item["code"] for item in json.loads(result.out)] == ["SF003"]
    assert result.err == "about to fail\n"


def test_plan_output_holds_only_the_plan(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = tmp_path / "sg_chatty_plan.py"
    path.write_text(CHATTY)
    result = cli(capsys, "plan", str(path))
    assert result.out.startswith("plan for experiment 'chatty': ")
    assert "loading" not in result.out and "building" not in result.out
    assert result.err.startswith("loading the chatty experiment\nbuilding it\n")


@pytest.mark.parametrize("env", [
    {"PYTHONIOENCODING": "ascii"},
    {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},  # an ASCII locale
], ids=["ascii", "C-locale"])
def test_text_the_terminal_cannot_encode_is_escaped_not_an_error(tmp_path: Path,
                                                                 env: dict[str, str]) -> None:
    path = tmp_path / "sg_accented.py"
    path.write_text(ACCENTED, encoding="utf-8")
    result = command("validate", str(path), env=env)
    assert result.code == 0, result.text
    assert "internal error" not in result.text and "UnicodeEncodeError" not in result.text
    assert result.out.splitlines()[0].startswith("warning[SF506] stage '\\xe9tape' > loader")
    assert result.out.splitlines()[-1].startswith("experiment '\\xe9tapes' is valid")
    assert result.err == "chargement de l'\\xe9tape\n"  # the experiment's own print, too
