"""Loading EXP: every way it can fail is one compiler-style diagnostic, never a traceback."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from cli_helpers import FIXTURES, VALID, cli, command, line_of

import stagegraph as sg
from stagegraph.loading import LoadError, load_experiment, shadowing, split_spec


def problem(spec: str) -> LoadError:
    with pytest.raises(LoadError) as caught:
        load_experiment(spec)
    return caught.value


def test_split_spec() -> None:
    assert split_spec("a/b.py") == ("a/b.py", "experiment")
    assert split_spec("a/b.py:make") == ("a/b.py", "make")
    assert split_spec(r"C:\work\exp.py") == (r"C:\work\exp.py", "experiment")
    assert split_spec("exp.py:not-a-name") == ("exp.py:not-a-name", "experiment")


def test_loads_an_experiment_and_a_factory() -> None:
    assert load_experiment(VALID).name == "fixture"
    assert load_experiment(f"{VALID}:make_experiment").name == "small"
    assert load_experiment(f"{FIXTURES / 'exp_shapes.py'}:factory").name == "from-factory"


def test_module_is_named_after_the_file_stem() -> None:
    plan = sg.compile(load_experiment(VALID))
    assert plan.stage("pretrain").callback("tracker").type == "exp_valid.Tracker"
    assert sys.modules["exp_valid"].experiment.name == "fixture"


def test_the_files_folder_is_importable(tmp_path: Path) -> None:
    (tmp_path / "sg_sibling_helpers.py").write_text("NAME = 'from-sibling'\n")
    (tmp_path / "sg_uses_sibling.py").write_text(
        "import stagegraph as sg\nfrom sg_sibling_helpers import NAME\n"
        "experiment = sg.Experiment(NAME)\n")
    assert load_experiment(str(tmp_path / "sg_uses_sibling.py")).name == "from-sibling"


def test_missing_file() -> None:
    err = problem("no/such/exp.py").problem
    assert (err.code, err.file, err.message) == (
        "SF001", "no/such/exp.py", "experiment file 'no/such/exp.py' not found")
    assert "check the path" in err.hint


def test_folder_and_non_python_file() -> None:
    assert problem(str(FIXTURES)).problem.message.endswith("is a folder, not an experiment file")
    err = problem(str(FIXTURES / "syntax_error.txt")).problem
    assert (err.code, err.message) == ("SF001", f"{str(FIXTURES / 'syntax_error.txt')!r} is "
                                                "neither a Python file nor a config file")


def test_syntax_error_shows_file_line_and_message(tmp_path: Path) -> None:
    path = tmp_path / "sg_syntax_fixture.py"
    shutil.copy(FIXTURES / "syntax_error.txt", path)
    err = problem(str(path)).problem
    assert err.code == "SF002"
    assert (err.file, err.line) == (str(path), 5)
    assert err.message.startswith("SyntaxError: invalid syntax")
    assert err.hint == 'line 5 reads: experiment = sg.Experiment("x" seed=1)'
    assert str(err).startswith(f"error[SF002] {path}:5:")


def test_import_error_shows_type_message_and_line() -> None:
    path = FIXTURES / "exp_import_error.py"
    err = problem(str(path)).problem
    assert err.code == "SF003"
    assert err.message == "ModuleNotFoundError: No module named 'stagegraph_no_such_module'"
    assert err.line == line_of(path, "import stagegraph_no_such_module")
    assert "install it" in err.hint
    assert "exp_import_error" not in sys.modules  # a failed import leaves nothing behind


def test_exception_while_executing_points_at_the_users_line() -> None:
    path = FIXTURES / "exp_raises.py"
    err = problem(str(path)).problem
    assert err.code == "SF003"
    assert err.message == "ValueError: no config named 'digits'"
    assert err.line == line_of(path, "raise ValueError")
    assert str(err).startswith(f"error[SF003] {path}:{err.line}: ValueError")


def test_exception_in_another_module_says_where_it_was_raised(tmp_path: Path) -> None:
    (tmp_path / "sg_broken_helper.py").write_text("def load():\n    return 1 / 0\n")
    exp = tmp_path / "sg_calls_helper.py"
    exp.write_text("import sg_broken_helper\n\nDATA = sg_broken_helper.load()\n")
    err = problem(str(exp)).problem
    assert err.line == 3
    assert err.message == ("ZeroDivisionError: division by zero (raised in "
                           f"{tmp_path / 'sg_broken_helper.py'}:2)")


def test_no_experiment_attribute_lists_candidates() -> None:
    path = str(FIXTURES / "exp_no_attr.py")
    err = problem(path).problem
    assert err.code == "SF004"
    assert err.message == "exp_no_attr.py defines no 'experiment'. Did you mean 'experiments'?"
    assert err.hint == ("it defines 'experiments' (Experiment), 'build_experiment' (function); "
                        f"pick one with {path}:experiments")
    assert problem(f"{path}:exp").problem.code == "SF004"
    assert load_experiment(f"{path}:build_experiment").name == "almost"


def test_no_candidates_hint(tmp_path: Path) -> None:
    path = tmp_path / "sg_empty_module.py"
    path.write_text("X = 1\n")
    err = problem(str(path)).problem
    assert err.message == "sg_empty_module.py defines no 'experiment'."
    assert err.hint.startswith("define experiment = stagegraph.Experiment(...)")


@pytest.mark.parametrize(("name", "code", "message", "line_text"), [
    ("", "SF005", "'experiment' is 3 (int), not a stagegraph.Experiment", "experiment = 3"),
    (":needs_args", "SF005", "'needs_args' needs arguments, but an experiment function takes "
     "none", "def needs_args"),
    (":returns_none", "SF005", "returns_none() returned NoneType, not a stagegraph.Experiment",
     "def returns_none"),
    (":raises", "SF006", "raises() raised KeyError: 'digits'", 'datasets["digits"]'),
])
def test_wrong_shapes(name: str, code: str, message: str, line_text: str) -> None:
    path = FIXTURES / "exp_shapes.py"
    err = problem(f"{path}{name}").problem
    assert (err.code, err.message) == (code, message)
    assert err.line == line_of(path, line_text)


LOAD_FAILURES = [
    ("missing.py", "SF001"), ("exp_import_error.py", "SF003"), ("exp_raises.py", "SF003"),
    ("exp_no_attr.py", "SF004"), ("exp_shapes.py", "SF005"), ("exp_shapes.py:raises", "SF006"),
]


@pytest.mark.parametrize(("spec", "code"), LOAD_FAILURES)
@pytest.mark.parametrize("command", ["validate", "plan", "explain", "run"])
def test_every_command_reports_load_errors_without_traceback(
        capsys: pytest.CaptureFixture[str], spec: str, code: str, command: str) -> None:
    args = [command, str(FIXTURES / spec)]
    if command == "explain":
        args += ["--stage", "train", "a", "b"]
    result = cli(capsys, *args)
    assert result.code == 1
    assert f"error[{code}] " in result.text
    assert "could not load" in result.text
    assert "Traceback" not in result.text


def test_load_error_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIXTURES / "exp_raises.py")
    result = cli(capsys, "validate", path, "--format", "json")
    assert result.code == 1
    (item,) = json.loads(result.out)
    assert item["code"] == "SF003" and item["severity"] == "error"
    assert item["location"]["file"] == path and item["location"]["line"] == 7


def test_traceback_flag_shows_the_original_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "validate", str(FIXTURES / "exp_raises.py"), "--traceback")
    assert result.code == 1
    assert "Traceback" in result.err and "ValueError: no config named 'digits'" in result.err


# --- a neighbour named like a standard module (SF007) ---------------------------------------
NEIGHBOUR = 'raise RuntimeError("the neighbour {name}.py was imported instead of {name}")\n'


def shadowed_folder(tmp_path: Path) -> Path:
    """An experiment folder with a `concurrent.py` (imported by torch, not yet by stagegraph)
    and a `json.py` (imported by the experiment) that fail if they are ever imported."""
    folder = tmp_path / "exp"
    folder.mkdir()
    for name in ("concurrent", "json"):
        (folder / f"{name}.py").write_text(NEIGHBOUR.format(name=name))
    (folder / "sg_helpers_ok.py").write_text("SEED = 3\n")  # an ordinary neighbour still imports
    future = "from __future__ import annotations\n"
    tiny = (FIXTURES / "exp_tiny_run.py").read_text().replace(future, future + (
        "import concurrent.futures\nimport json\n\nfrom sg_helpers_ok import SEED\n\n"
        "assert concurrent.futures.ThreadPoolExecutor and json.dumps([SEED]) == '[3]'\n"))
    (folder / "sg_shadowed.py").write_text(tiny)
    return folder


def test_neighbours_named_like_standard_modules_are_named_and_never_imported(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = shadowed_folder(tmp_path)
    exp = str(folder / "sg_shadowed.py")
    result = command("validate", exp, cwd=tmp_path)
    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert lines[0] == (
        f"warning[SF007] {folder / 'concurrent.py'}: concurrent.py next to the experiment file "
        "is named like the standard library's module 'concurrent', which `import concurrent` "
        "finds first: this file is never imported by it")
    assert lines[1] == ("  hint: rename concurrent.py (e.g. to my_concurrent.py) and the imports "
                        "of it")
    assert lines[2].startswith(f"warning[SF007] {folder / 'json.py'}: json.py next to")
    assert lines[-1].startswith("experiment 'tiny' is valid: 0 error(s), 2 warning(s)")
    ran = command("run", exp, "--quiet", "--check", "--device", "cpu", cwd=tmp_path)
    assert ran.code == 0, ran.text  # torch imported the real concurrent.futures
    assert "warning[SF007]" in ran.err and "running: experiment 'tiny' is valid" in ran.err
    # In this process too (its json and concurrent are the real ones already):
    assert cli(capsys, "validate", exp, "--strict").code == 1
    items = json.loads(cli(capsys, "validate", exp, "--format", "json").out)
    assert [(i["code"], i["severity"], Path(i["location"]["file"]).name) for i in items] == [
        ("SF007", "warning", "concurrent.py"), ("SF007", "warning", "json.py")]


def test_a_neighbour_first_on_sys_path_is_said_to_replace_the_module(tmp_path: Path) -> None:
    # `python -m` from the folder puts it first: the neighbour then replaces the module.
    (tmp_path / "tabnanny.py").write_text(NEIGHBOUR.format(name="tabnanny"))
    assert "tabnanny" not in sys.modules
    sys.path.insert(0, str(tmp_path))
    try:
        (found,) = shadowing(str(tmp_path / "sg_any.py"))
    finally:
        sys.path.remove(str(tmp_path))
    assert found.message == (
        "tabnanny.py next to the experiment file is named like the standard library's module "
        "'tabnanny', and replaces it for every `import tabnanny`, inside stagegraph and torch "
        "too, because its folder comes first on sys.path")
    assert found.file == str(tmp_path / "tabnanny.py") and found.severity == "warning"


def test_a_neighbour_named_like_an_installed_package_is_named(tmp_path: Path) -> None:
    (tmp_path / "networkx.py").write_text("")  # stagegraph's own dependency
    (tmp_path / "sg_unique_helper.py").write_text("")
    (found,) = shadowing(str(tmp_path / "sg_any.py"))
    assert found.message.startswith("networkx.py next to the experiment file is named like the "
                                    "installed module 'networkx' (")


def test_an_experiment_file_named_like_a_module_is_not_registered_under_its_name(
        tmp_path: Path) -> None:
    path = tmp_path / "json.py"
    path.write_text("import stagegraph as sg\nexperiment = sg.Experiment('named-json')\n")
    import json as real

    assert load_experiment(str(path)).name == "named-json"
    assert sys.modules["json"] is real
    (warning,) = shadowing(str(path))
    assert warning.message.startswith(
        "the experiment file json.py is named like the standard library's module 'json', so it "
        "is not registered as module 'json'")


def test_the_files_folder_goes_last_on_sys_path(tmp_path: Path) -> None:
    exp = tmp_path / "sg_last_on_path.py"
    exp.write_text("import stagegraph as sg\nexperiment = sg.Experiment('x')\n")
    load_experiment(str(exp))
    assert sys.path[-1] == str(tmp_path)
    sys.path.remove(str(tmp_path))
