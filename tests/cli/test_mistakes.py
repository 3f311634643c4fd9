"""Issue 8's catalogue: realistic mistakes that `stagegraph validate` must catch, and their twins.

Each mistake is a fixture under ``fixtures/mistakes/`` defining ``experiment()`` (the mistake) and
``fixed()`` (its corrected twin). A mistake makes ``stagegraph validate FILE`` exit 1, reporting
the expected code at the expected place (and a did-you-mean where one applies) — run as a real
command, since the exit code is the promise. A twin validates clean and runs to the end on tiny
real data (in this process: the CLI is the same code, and this keeps the file fast).

``MISTAKES`` is the table of the closing note; ``python tests/cli/test_mistakes.py`` prints it
with the first line each mistake gets now. A case a branch still being built must catch is
marked ``xfail(strict=True)`` with that branch: remove the mark once it is merged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import Result, cli, command

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(__file__).parent / "fixtures" / "mistakes"
BUILT = "mistake_data: building the model"  # what the fixtures' model factory prints



@dataclass(frozen=True)
class Mistake:
    """One row: what the user got wrong, the fixture, the code and the start of its line.

    ``code`` ``None``: not the user's mistake — the file validates clean and runs. ``line``: a
    fragment of the first line reporting ``code`` (its level, code and location); ``also`` more
    fragments of that line; ``suggests``: the name its did-you-mean must offer; ``never``:
    fragments it must not hold. ``needs`` / ``twin_needs`` / ``run_needs``: the branches the
    mistake's diagnostic / the twin's clean run / (SF510) the run's refusal still wait for.
    """

    mistake: str
    file: str
    code: str | None
    line: str = ""
    suggests: str | None = None
    also: tuple[str, ...] = ()
    never: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    twin_needs: tuple[str, ...] = ()
    run_needs: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return str(FOLDER / self.file)

    @property
    def deferred(self) -> bool:
        """SF510 without a logdir: a note for validate; the run refuses."""
        return self.code == "SF510"


MISTAKES: tuple[Mistake, ...] = (
    Mistake("misspelt hook `on_epoch_ends`", "m01_misspelt_hook.py", "SF107",
            "error[SF107] stage 'train' > callback 'summary'", suggests="on_epoch_end"),
    Mistake("stage's own OptimizerCallback(accumulation_steps=2) shadowed by a migrating "
            "experiment-scoped OptimizerCallback(accumulation_steps=4)",
            "m02_shadowed_optimizer.py", "SF301",
            "error[SF301] stage 'finetune' > callback 'optimizer'"),
    Mistake("a training stage whose train loader is named `finetune`",
            "m03_finetune_loader.py", "SF511", "error[SF511] stage 'finetune'"),
    Mistake("EarlyStoppingCallback(metric=\"los\")", "m04_early_stop_typo.py", "SF501",
            "error[SF501] stage 'train' > callback 'early_stop'", suggests="loss"),
    Mistake("early stopper pinned to `accuracy` migrating into a stage without accuracy",
            "m05_migrating_early_stopper.py", "SF501",
            "error[SF501] stage 'finetune' > callback 'early_stop'", also=("'train'",)),
    Mistake("a stage with a scheduler and no optimizer", "m06_scheduler_no_optimizer.py",
            "SF514", "error[SF514] stage 'train'"),
    Mistake("experiment-level scheduler reaching an infer stage (not built there)",
            "m07_infer_scheduler.py", None),
    Mistake("TensorBoardLogger and no logdir", "m08_tensorboard_no_logdir.py", "SF510",
            "info[SF510] stage 'train' > callback 'tensorboard'"),
    Mistake("a checkpoint callback and no logdir", "m09_checkpoint_no_logdir.py", "SF510",
            "info[SF510] stage 'train' > callback 'best'"),
    Mistake("a callback reads runner.batch_metrics[\"acc\"]; the metric is `accuracy`",
            "m10_batch_metric_typo.py", "SF501", "error[SF501] stage 'train' > callback 'report'",
            suggests="accuracy"),
    Mistake("a callback reads runner.batch_metrics[\"accuracy\"] undeclared, bucketed before "
            "its writer (ordered after it by inference)", "m11_undeclared_read_order.py", None),
    Mistake("two early stoppers in one stage", "m12_two_early_stoppers.py", "SF515",
            "error[SF515] stage 'train'", also=("'early_stop'", "'patience'")),
    Mistake("two checkpoint callbacks writing the same files", "m13_two_checkpoints.py",
            "SF515", "error[SF515] stage 'train'", also=("'checkpoint'", "'top3'")),
    Mistake("main_metric=\"accuracy\" with minimize_metric left at True",
            "m14_metric_direction.py", "SF516", "error[SF516] stage 'train'"),
    Mistake("main_metric that nothing writes", "m15_main_metric_unwritten.py", "SF503",
            "error[SF503] stage 'train'", suggests="accuracy"),
    Mistake("a misnamed valid loader", "m16_valid_loader.py", "SF504",
            "error[SF504] stage 'train'", suggests="validation"),
    Mistake("experiment-scoped early stopper migrating into an infer stage",
            "m17_infer_early_stopper.py", "SF501",
            "error[SF501] stage 'infer' > callback 'early_stop'"),
    Mistake("after= names a callback that exists only in another stage",
            "m18_after_other_stage.py", "SF401",
            "error[SF401] stage 'finetune' > callback 'lr_probe2'",
            never=("Did you mean 'lr_probe2'",)),
)


def _waits(branches: tuple[str, ...]) -> list[pytest.MarkDecorator]:
    if not branches:
        return []
    return [pytest.mark.xfail(strict=True, reason=f"needs branch {' + '.join(branches)}")]


def _cases(rows: list[Mistake], needs: str = "needs") -> list[object]:
    return [pytest.param(m, id=m.file.removesuffix(".py"), marks=_waits(getattr(m, needs)))
            for m in rows]


def validate(*args: str) -> Result:
    """``python -m stagegraph validate ARGS`` with this tree first on the path."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return command("validate", *args, env={"PYTHONPATH": path})


def reported(out: str, code: str, level: str = "") -> str:
    """The first line reporting ``code`` (at ``level``), and its hint line if there is one."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if f"{level}[{code}]" in line:
            hint = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("  ") else ""
            return f"{line}\n{hint}" if hint else line
    raise AssertionError(f"no {code} in:\n{out}")


def check_line(mistake: Mistake, text: str) -> None:
    first = text.splitlines()[0]
    assert mistake.line in first, first
    for fragment in mistake.also:
        assert fragment in first, (fragment, first)
    for fragment in mistake.never:
        assert fragment not in text, (fragment, text)
    if mistake.suggests is not None:
        assert re.search(rf"Did you mean '(\w+\.)?{re.escape(mistake.suggests)}'\?", text), text


@pytest.mark.parametrize("mistake", _cases([m for m in MISTAKES
                                             if m.code is not None and not m.deferred]))
def test_validate_catches_the_mistake(mistake: Mistake) -> None:
    result = validate(mistake.path)
    assert result.code == 1, result.text
    assert mistake.code is not None
    check_line(mistake, reported(result.out, mistake.code))


@pytest.mark.parametrize("mistake", _cases([m for m in MISTAKES if m.deferred]))
def test_without_a_logdir_validate_notes_it(mistake: Mistake) -> None:
    result = validate(mistake.path)
    assert result.code == 0, result.text
    check_line(mistake, reported(result.out, "SF510"))


@pytest.mark.parametrize("mistake", _cases([m for m in MISTAKES if m.deferred], "run_needs"))
def test_without_a_logdir_run_refuses_before_building_anything(
        mistake: Mistake, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", mistake.path, "--device", "cpu", "--quiet")
    assert result.code == 1, result.text
    assert BUILT not in result.text
    line = reported(result.err, "SF510", level="error")
    assert "--logdir DIR" in line and "logdir=" in line


@pytest.mark.parametrize("mistake", _cases(list(MISTAKES), "twin_needs"))
def test_the_twin_validates_clean_and_runs_to_the_end(
        mistake: Mistake, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    twin, logdir = f"{mistake.path}:fixed", str(tmp_path / "logs")
    checked = cli(capsys, "validate", twin, "--logdir", logdir)
    assert checked.code == 0 and checked.out.startswith("ok: "), checked.text
    if mistake.deferred:  # the same file: clean with a logdir
        assert checked.out == cli(capsys, "validate", mistake.path, "--logdir", logdir).out
    ran = cli(capsys, "run", twin, "--logdir", logdir, "--device", "cpu", "--quiet")
    assert ran.code == 0, ran.text
    assert BUILT in ran.err


def closing_table() -> str:
    """The closing note's table: each mistake, its code and the first line it gets now."""
    rows = ["| mistake | code | first line of the message |", "|---|---|---|"]
    for m in MISTAKES:
        if m.code is None:
            rows.append(f"| {m.mistake} | — | validates clean and runs |")
            continue
        out = validate(m.path).out
        first = reported(out, m.code).splitlines()[0] if f"[{m.code}]" in out else "(not yet)"
        rows.append(f"| {m.mistake} | {m.code} | `{first}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(closing_table())
