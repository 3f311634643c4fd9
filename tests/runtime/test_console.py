"""The console of real runs: the device line, the epoch table, best checkpoints, early stops,
metrics selection, and stderr (not stdout) from `stagegraph run`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

torch = pytest.importorskip("torch")

import stagegraph as sg  # noqa: E402
from stagegraph.cli import main  # noqa: E402

HERE = Path(__file__).parent
FIXTURE = HERE / "fixtures" / "console_exp.py"
sys.path.insert(0, str(FIXTURE.parent))
import console_exp  # noqa: E402


def console_text(exp: sg.Experiment, **options: Any) -> tuple[Any, list[str]]:
    """Run ``exp`` with its own ConsoleLogger writing to a buffer; the runner and the lines."""
    runner = sg.run(exp, device=options.pop("device", "cpu"), verbose=False, **options)
    file = next(cb.file for cb in runner.callbacks.values() if type(cb).__name__ ==
                "ConsoleLogger")
    return runner, file.getvalue().splitlines()


def test_the_run_starts_with_the_device_auto_chose_and_the_precision() -> None:
    _, lines = console_text(console_exp.build(file=io.StringIO()), device="auto")
    assert lines[0] == "experiment 'console': device cpu (device 'auto' chose it), precision fp32"
    _, lines = console_text(console_exp.build(precision="bf16", file=io.StringIO()))
    assert lines[0] == "experiment 'console': device cpu, precision bf16 (bfloat16 autocast)"


def test_the_epoch_table_has_a_row_per_metric_and_a_column_per_loader() -> None:
    runner, lines = console_text(console_exp.build(num_epochs=1, file=io.StringIO()))
    head = lines.index(next(line for line in lines if line.startswith("[train] epoch 1/1")))
    assert lines[head].endswith(": lr=0.1  (best)")
    table = lines[head + 1: head + 5]
    assert [row.split()[0] for row in table] == ["metric", "accuracy", "accuracy02", "loss"]
    metrics = runner.epoch_metrics
    for row in table[1:]:
        name, train, valid = row.split()
        assert (train, valid) == (f"{metrics[f'train_{name}']:.4g}",
                                  f"{metrics[f'valid_{name}']:.4g}")


def _starts(row: str) -> tuple[int, ...]:
    """Where each cell of a table row starts."""
    return tuple(i for i, c in enumerate(row) if c != " " and (i == 0 or row[i - 1] == " "))


def test_columns_are_aligned() -> None:
    _, lines = console_text(console_exp.build(num_epochs=1, file=io.StringIO()))
    head = next(i for i, line in enumerate(lines) if line.startswith("[train] epoch 1/1"))
    table = lines[head + 1: head + 5]
    # Every cell of a column starts at the same offset, two spaces after the column before.
    assert len({_starts(row) for row in table}) == 1, table
    starts = _starts(table[0])
    assert starts[1] == 2 + max(len(row.split()[0]) for row in table) + 2
    assert all(row.startswith("  ") for row in table)


def test_metrics_shown_picks_rows_by_name_and_pattern_in_its_order() -> None:
    _, lines = console_text(console_exp.build(num_epochs=1, file=io.StringIO(),
                                              metrics_shown=["loss", "accuracy*"]))
    head = next(i for i, line in enumerate(lines) if line.startswith("[train] epoch 1/1"))
    assert "lr=" not in lines[head] and lines[head].endswith("(best)")  # lr not chosen
    assert [row.split()[0] for row in lines[head + 1: head + 5]] == [
        "metric", "loss", "accuracy", "accuracy02"]
    with pytest.raises(ValueError, match=r"takes a list of metric names"):
        sg.runtime.callbacks.ConsoleLogger(metrics_shown="loss")


def test_a_new_best_checkpoint_is_named_with_its_metric_and_value(tmp_path: Path) -> None:
    _, lines = console_text(console_exp.build(file=io.StringIO()), logdir=tmp_path)
    best = [line for line in lines if "new best checkpoint" in line]
    path = tmp_path / "checkpoints" / "train.best.pth"
    saved = torch.load(path, weights_only=True)
    epoch = saved["counters"]["epoch"]
    value = saved["valid_metrics"]["accuracy"]
    assert best[-1] == (f"[train] new best checkpoint {path} (epoch {epoch}, valid "
                        f"accuracy={value:.4g})")
    # Said once per best epoch, right after that epoch's table.
    assert len(best) == sum(line.endswith("(best)") for line in lines)


def test_early_stopping_says_why_the_stage_ended() -> None:
    exp = console_exp.stalled()
    exp.stages[0].callbacks["console"] = sg.runtime.callbacks.ConsoleLogger(file=io.StringIO())
    runner, lines = console_text(exp)
    assert runner.epoch == 3  # best at 1, no better at 2 and 3: patience 2
    best = runner.best_valid_metrics["accuracy"]
    (line,) = [line for line in lines if "early stop" in line]
    assert line == (f"[train] early stop after epoch 3: valid accuracy (max) did not improve "
                    f"for 2 epoch(s) (patience 2); best accuracy {best:.4g} at epoch 1")
    assert lines.index(line) > max(i for i, text in enumerate(lines)
                                   if text.startswith("[train] epoch 3/6"))
    stopper = runner.callbacks["early_stopping"]
    assert (stopper.stopped.best_epoch, stopper.stopped.patience) == (1, 2)


def test_a_stage_that_runs_all_its_epochs_has_no_early_stop_line() -> None:
    _, lines = console_text(console_exp.build(num_epochs=2, patience=5, file=io.StringIO()))
    assert not any("early stop" in line or "ended after" in line for line in lines)


def test_the_cli_writes_the_console_to_stderr_and_nothing_to_stdout(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent.parent)}
    result = subprocess.run(
        [sys.executable, "-m", "stagegraph", "run", f"{FIXTURE}:stalled", "--device", "cpu",
         "--logdir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert err[0].startswith("experiment 'console': device cpu, precision fp32")
    assert any(line.startswith("[train] early stop after epoch 3:") for line in err)
    assert any(line.startswith("[train] new best checkpoint ") for line in err)
    assert err[-2].split() == ["stage", "epoch", "accuracy", "accuracy02", "loss"]


def test_main_in_process_keeps_stdout_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(FIXTURE), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[train] epoch 2/2" in captured.err and "best valid metrics" in captured.err


def test_metrics_shown_that_matches_nothing_is_warned_about_once_per_stage() -> None:
    exp = console_exp.build(num_epochs=2, file=io.StringIO(), metrics_shown=["loss", "f1"])
    with pytest.warns(sg.runtime.errors.StagegraphWarning) as caught:
        console_text(exp)
    messages = [str(w.message) for w in caught if "metrics_shown" in str(w.message)]
    assert messages == [
        "stage 'train', ConsoleLogger: metrics_shown ['f1'] matches none of the stage's epoch "
        "metrics (accuracy, accuracy02, loss, lr); fix the name, or use a pattern such as 'acc*'"]


class Bar:
    """Stands in for tqdm's notebook bar: records how the console drives it."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.made.append(kwargs)
        self.n, self.closed = 0, False

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def test_in_a_notebook_the_default_console_draws_tqdm_auto_widgets(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """In Jupyter ``tqdm.auto`` is the widget bar, which draws itself (no ``file``); a console
    given a file keeps plain lines there."""
    from stagegraph.runtime.callbacks import console

    monkeypatch.setattr(console, "_NOTEBOOK", True)
    monkeypatch.setattr(console, "tqdm", Bar)
    Bar.made = []
    sg.run(console_exp.build(num_epochs=1), device="cpu")
    assert [(bar["desc"], bar["total"]) for bar in Bar.made] == [("1/1 train", 4),
                                                                 ("1/1 valid", 2)]
    assert all("file" not in bar for bar in Bar.made)
    assert "[train] epoch 1/1" in capsys.readouterr().err  # the lines still go to stderr
    Bar.made = []
    text = io.StringIO()
    sg.run(console_exp.build(num_epochs=1, file=text), device="cpu", verbose=False)
    assert Bar.made == [] and "1/1 train: 4/4 batches in " in text.getvalue()


def test_load_best_on_stage_end_says_which_weights_go_on(tmp_path: Path) -> None:
    exp = console_exp.stalled()
    text = io.StringIO()
    exp.stages[0].callbacks.update({
        "console": sg.runtime.callbacks.ConsoleLogger(file=text),
        "checkpoint": sg.runtime.callbacks.CheckpointCallback(load_best_on_stage_end=True)})
    sg.run(exp, device="cpu", logdir=tmp_path, verbose=False)
    lines = text.getvalue().splitlines()
    assert lines[-4:-3] == ["[train] load_best_on_stage_end: the model goes on with the weights "
                            "of epoch 1 (checkpoints/train.best.pth), not of its last epoch 3"]
    assert lines[-5].startswith("[train] early stop after epoch 3")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")
def test_a_terminal_of_zero_columns_gets_plain_lines() -> None:
    """A pty nobody sized (``script``, some CI runners) has 0 columns: tqdm would draw empty
    lines there, so the console writes plain lines; once sized, it draws bars."""
    import fcntl
    import struct
    import termios

    from stagegraph.runtime.callbacks.console_table import is_tty

    master, replica = os.openpty()
    with open(replica, "w") as terminal:
        try:
            fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            assert not is_tty(terminal)
            fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            assert is_tty(terminal)
        finally:
            os.close(master)
    assert not is_tty(io.StringIO())
