"""Every kind of bad input, in one place: the CLI prints what is wrong and exits 1 (2 for usage).

No case may print a Python traceback or call itself an internal error. `BAD_INPUTS` is the list
the closing note counts; each entry is run by `test_bad_input` through ``stagegraph.cli.main``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_helpers import FIXTURES, INVALID, cli

torch = pytest.importorskip("torch")

BAD = str(FIXTURES / "exp_bad_run.py")
SHAPES = str(FIXTURES / "exp_shapes.py")
RUN = ("--quiet", "--device", "cpu")


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)  # written to the working directory
    before_any_work: bool = False  # the model factory must not have run


BAD_INPUTS = [
    Case("file does not exist", ("validate", "nowhere.py"), 1,
         ("error[SF001] nowhere.py: experiment file 'nowhere.py' not found",)),
    Case("a folder", ("run", "."), 1, ("error[SF001]", "is a folder, not an experiment file")),
    Case("not a Python file", ("plan", "exp.txt"), 1,
         ("error[SF001]", "is neither a Python file nor a config file"),
         files={"exp.txt": "stages: []\n"}),
    Case("a config file that is not an experiment", ("plan", "exp.yaml"), 1,
         ("exp.yaml:1:1: error[SF805] the file has no 'experiment'",
          "exp.yaml:1:9: error[SF803] stages must be a mapping, not []"),
         files={"exp.yaml": "stages: []\n"}),
    Case("syntax error", ("validate", "broken.py"), 1,
         ("error[SF002] broken.py:2:", "SyntaxError"),
         files={"broken.py": "import stagegraph\nexperiment = stagegraph.Experiment('a' 'b' 3)\n"}),
    Case("raises while imported", ("run", str(FIXTURES / "exp_raises.py"), *RUN), 1,
         ("error[SF003]", "ValueError: no config named 'digits'")),
    Case("imports a missing module", ("validate", str(FIXTURES / "exp_import_error.py")), 1,
         ("error[SF003]", "ModuleNotFoundError", "install it")),
    Case("module without `experiment`", ("validate", str(FIXTURES / "exp_no_attr.py")), 1,
         ("error[SF004]", "defines no 'experiment'. Did you mean 'experiments'?")),
    Case("object of the wrong type", ("validate", SHAPES), 1,
         ("error[SF005]", "'experiment' is 3 (int), not a stagegraph.Experiment")),
    Case("function needing arguments", ("validate", f"{SHAPES}:needs_args"), 1,
         ("error[SF005]", "needs arguments")),
    Case("function returning None", ("validate", f"{SHAPES}:returns_none"), 1,
         ("error[SF005]", "returned NoneType")),
    Case("experiment function raises", ("run", f"{SHAPES}:raises", *RUN), 1,
         ("error[SF006]", "raises() raised KeyError: 'digits'")),
    Case("experiment with errors", ("run", INVALID, *RUN), 1,
         ("error[SF402]", "not running: experiment 'broken' has errors")),
    Case("unknown device name", ("run", BAD, "--quiet", "--device", "tpu"), 1,
         ("error[SF108]", "'tpu'")),
    Case("loader yields unsupported batches", ("run", f"{BAD}:strings", *RUN), 1,
         ("error: run failed at stage 'train', epoch 1, loader 'train', batch 1:",
          "whose values are not tensors: 'features' (str), 'targets' (str)")),
    Case("output lacks the key a callback reads", ("run", f"{BAD}:missing_key", *RUN), 1,
         ("callback 'probabilities' (on_batch_end): KeyError: 'probs'",
          "the batch handler's output (keys ['logits'])")),
    Case("output lacks a key the callback's code reads", ("run", f"{BAD}:missing_literal_key",
                                                           *RUN), 1,
         ("error[SF501] stage 'train' > callback 'probabilities' > key 'output.probs': reads "
          "'output.probs' (inferred from source, exp_bad_run.py:", "Did you mean 'output.logits'?",
          "not running"), before_any_work=True),
    Case("exception in a user callback", ("run", f"{BAD}:callback_raises", *RUN), 1,
         ("error: run failed at stage 'train', epoch 2, loader 'valid', callback 'broken' "
          "(on_loader_end): ZeroDivisionError: division by zero in a user callback",)),
    Case("NaN loss", ("run", f"{BAD}:nan_loss", *RUN), 1,
         ("loader 'train', batch 2, callback 'optimizer' (on_batch_end): NonFiniteLossError: "
          "the loss 'loss' is nan",)),
    Case("resume from a missing path", ("run", BAD, *RUN, "--resume", "gone"), 1,
         ("cannot run: cannot resume:", "error[SF603]", "'gone' does not exist"),
         before_any_work=True),
    Case("resume without a logdir", ("run", BAD, *RUN, "--resume"), 1,
         ("error[SF603]", "resume=True looks for checkpoints in the logdir"),
         before_any_work=True),
    Case("unknown command", ("train", BAD), 2, ("invalid choice: 'train'",)),
    Case("no experiment given", ("run",), 2, ("the following arguments are required: EXP",)),
    Case("bad option value", ("validate", BAD, "--rank", "boss"), 2,
         ("argument --rank: invalid choice: 'boss'",)),
    Case("bad output suffix", ("plan", BAD, "-o", "plan.pdf"), 2, ("cannot write 'plan.pdf'",)),
    Case("--allow-plan-change without --resume", ("run", BAD, "--allow-plan-change"), 2,
         ("--allow-plan-change only applies with --resume",), before_any_work=True),
    Case("--overwrite with --resume", ("run", BAD, "--resume", "--overwrite"), 2,
         ("--overwrite starts the logdir's run over and --resume continues it",),
         before_any_work=True),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append(Case("cuda requested, not available", ("run", BAD, "--device", "cuda"), 1,
                           ("cannot run: device 'cuda' was requested, but CUDA is not available "
                            "on this machine",), before_any_work=True))


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input(case: Case, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    result = cli(capsys, *case.args)
    assert result.code == case.code, result.text
    for text in case.says:
        assert text in result.text, result.text
    assert "Traceback" not in result.text and "internal error" not in result.text
    if case.before_any_work:
        assert not (tmp_path / "built.marker").exists()


def test_the_catalogue_covers_the_issue() -> None:
    names = {c.name for c in BAD_INPUTS}
    assert {"file does not exist", "syntax error", "module without `experiment`",
            "object of the wrong type", "loader yields unsupported batches",
            "output lacks the key a callback reads"} <= names
    assert len(BAD_INPUTS) >= 24


# --- resuming from the command line -----------------------------------------------------------
def test_resume_from_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    logdir = ("--logdir", "runs/x")
    first = cli(capsys, "run", BAD, *RUN, *logdir, "--resume")
    assert first.code == 0, first.text
    assert first.err.startswith("warning[SF604] experiment: there is no checkpoint to resume "
                                "from in runs/x/checkpoints/resume: starting from the beginning")
    again = cli(capsys, "run", BAD, *RUN, *logdir, "--resume")
    assert again.code == 0
    assert again.err.startswith("resuming from runs/x/checkpoints/resume/epoch-000002.pth: "
                                "stage 'train' after epoch 2, global epoch 2")
    changed = cli(capsys, "run", f"{BAD}:callback_raises", *RUN, *logdir, "--resume")
    assert changed.code == 1
    assert changed.err.splitlines()[:2] == [
        "cannot run: the plan changed since checkpoint runs/x/checkpoints/resume/"
        "epoch-000002.pth was written (1 change(s)); not resuming:",
        "error[SF601] stage 'train' > callback 'broken': callback added (exp_bad_run.Broken)"]
    allowed = cli(capsys, "run", f"{BAD}:callback_raises", *RUN, *logdir, "--resume",
                  "--allow-plan-change")
    assert allowed.code == 0, allowed.text
    assert allowed.err.startswith(
        "warning[SF601] stage 'train' > callback 'broken': callback added (exp_bad_run.Broken) "
        "(ignored: resuming anyway)\nresuming from ")


def test_a_damaged_checkpoint_is_skipped_with_a_warning(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "run", BAD, *RUN, "--logdir", "x").code == 0
    latest = tmp_path / "x" / "checkpoints" / "resume" / "epoch-000002.pth"
    size = latest.stat().st_size
    latest.write_bytes(latest.read_bytes()[:64])
    result = cli(capsys, "run", BAD, *RUN, "--logdir", "x", "--resume")
    assert result.code == 0
    assert result.err.splitlines()[:2] == [
        "warning[SF602] experiment: skipped checkpoint x/checkpoints/resume/epoch-000002.pth: "
        f"it is truncated or damaged: 64 bytes, the index says {size}; falling "
        "back to the one before it",
        "resuming from x/checkpoints/resume/epoch-000001.pth: stage 'train' after epoch 1, "
        "global epoch 1"]
