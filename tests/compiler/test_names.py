"""Names safe on disk (SF519, SF520): every unsafe kind of name, each with a twin that is clean."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import LOADERS, Plain, experiment

import stagegraph as sg
from stagegraph.compiler import Location
from stagegraph.compiler.names import MAX_BYTES, NAME_MAX, fold, problems, safe_name


class Writer(sg.Callback):
    """A file writer known by its kind, as the built-in ones are (without importing torch)."""

    order = sg.CallbackOrder.External
    needs = ("logdir",)

    def __init__(self, kind: str, claims: tuple[str, ...] = (), **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(claims=claims or (f"files:{kind}/",), **kwargs)

    def on_epoch_end(self, runner: Any) -> None:
        pass


def found(plan: sg.ExecutionPlan, code: str) -> list[sg.Diagnostic]:
    return [d for d in plan.diagnostics if d.code == code]


def stage_named(name: str, logdir: str | None = None) -> sg.ExecutionPlan:
    exp = experiment()
    exp.add_stage(name, loaders=dict(LOADERS))
    return sg.compile(exp, logdir=logdir)


def loader_named(name: str) -> sg.ExecutionPlan:
    exp = experiment()
    exp.add_stage("train", loaders={**LOADERS, name: object()}, lints={"SF506": "allow"})
    return sg.compile(exp)


# Each unsafe name, what the message says about it, and its clean twin.
UNSAFE = [
    ("../../x", "contains '/' (a path separator) and has '..' parts", "x"),
    ("a/b", "contains '/' (a path separator)", "a_b"),
    ("a\\b", "contains '\\\\' (a path separator)", "a_b"),
    ("..", "is '.' or '..'", "unnamed"),
    (".", "is '.' or '..'", "unnamed"),
    ("nul\x00byte", "contains '\\x00' (a NUL, control or unencodable character)", "nul_byte"),
    ("tab\there", "contains '\\t' (a NUL, control or unencodable character)", "tab_here"),
    ("a:b", "contains ':' (which Windows refuses in file names)", "a_b"),
    ('what?*"', "contains '\"', '*', '?' (which Windows refuses", "what___"),
    (" train", "starts or ends with a space or a dot", "train"),
    ("train.", "starts or ends with a space or a dot", "train"),
    (".hidden", "starts or ends with a space or a dot", "hidden"),
    ("é" * 101, "is 202 bytes long in UTF-8, over the 200 allowed", "é" * 100),
]


@pytest.mark.parametrize(("name", "said", "safe"), UNSAFE)
def test_an_unsafe_stage_name_is_an_error_with_a_safe_suggestion(name: str, said: str,
                                                                  safe: str) -> None:
    (diag,) = found(stage_named(name), "SF519")
    assert diag.severity is sg.Severity.error
    assert diag.location == Location(stage=name)
    assert said in diag.message, diag.message
    assert "logs/{stage}.csv" in diag.message
    assert diag.hint == f"rename the stage, e.g. {safe!r}"
    assert safe_name(name) == safe and problems(safe) == []
    twin = stage_named(safe, logdir="runs/x")  # the suggestion validates clean, logdir and all
    assert twin.ok and found(twin, "SF519") == [], twin.diagnostics


@pytest.mark.parametrize(("name", "said", "safe"), UNSAFE)
def test_an_unsafe_loader_name_is_an_error(name: str, said: str, safe: str) -> None:
    (diag,) = found(loader_named(name), "SF519")
    assert diag.location == Location(stage="train", loader=name)
    assert said in diag.message and "predictions/{stage}_{loader}.pt" in diag.message
    assert found(loader_named(safe), "SF519") == []


def test_an_unsafe_callback_name_is_an_error_where_it_is_declared_only() -> None:
    exp = experiment()
    exp.add_stage("pretrain", loaders=dict(LOADERS),
                  callbacks={"log/../x": Plain(scope="experiment")})
    exp.add_stage("train", loaders=dict(LOADERS))  # it migrates here: reported once
    (diag,) = found(sg.compile(exp), "SF519")
    assert diag.location == Location(stage="pretrain", callback="log/../x")
    assert diag.hint == "rename the callback, e.g. 'log_x'"
    twin = experiment()
    twin.add_stage("train", loaders=dict(LOADERS), callbacks={"log_x": Plain()})
    assert sg.compile(twin).ok


def test_the_byte_limit_counts_utf8_bytes() -> None:
    assert problems("é" * (MAX_BYTES // 2)) == []
    assert problems("a" * MAX_BYTES) == [] and problems("a" * (MAX_BYTES + 1)) != []
    long = "x" * 300  # the 300-character name: an error before any stage runs
    (diag,) = found(stage_named(long), "SF519")
    assert "is 300 bytes long in UTF-8, over the 200 allowed" in diag.message
    assert diag.hint == f"rename the stage, e.g. {'x' * MAX_BYTES!r}"


def test_a_checkpoint_file_over_name_max_is_reported_at_the_writer() -> None:
    stage, prefix = "s" * MAX_BYTES, "p" * 50
    exp = experiment()
    exp.add_stage(stage, loaders=dict(LOADERS), callbacks={
        "ckpt": Writer("checkpoint", claims=(f"files:checkpoints/{prefix}",))})
    (diag,) = found(sg.compile(exp, logdir="runs/x"), "SF519")
    assert diag.location == Location(stage=stage, callback="ckpt")
    size = len(f"{prefix}{stage}.exception.pth")
    assert size > NAME_MAX and f"{size} bytes long in UTF-8, over the 255" in diag.message
    twin = experiment()
    twin.add_stage(stage, loaders=dict(LOADERS), callbacks={
        "ckpt": Writer("checkpoint", claims=("files:checkpoints/p",))})
    assert sg.compile(twin, logdir="runs/x").ok


def test_the_default_checkpoint_of_a_200_byte_stage_fits() -> None:
    plan = stage_named("s" * MAX_BYTES, logdir="runs/x")  # adds checkpoint and csv_logger
    assert {"checkpoint", "csv_logger"} <= {cb.name for cb in plan.stages[0].callbacks}
    assert plan.ok, plan.diagnostics


def test_a_prediction_file_over_name_max_is_reported_at_the_writer() -> None:
    loaders = {**LOADERS, "infer_" + "l" * 150: object()}
    exp = experiment()
    exp.add_stage("infer_" + "s" * 150, loaders=loaders, lints={"SF505": "allow"},
                  callbacks={"predictions": Writer("prediction_writer")})
    (diag,) = found(sg.compile(exp, logdir="runs/x"), "SF519")
    assert diag.location.callback == "predictions"
    twin = experiment()
    twin.add_stage("infer_" + "s" * 50, loaders=loaders, lints={"SF505": "allow"},
                   callbacks={"predictions": Writer("prediction_writer")})
    assert found(sg.compile(twin, logdir="runs/x"), "SF519") == []


def test_stages_equal_but_for_case_are_an_error_at_the_later_one() -> None:
    plan = sg.compile(experiment("Train", "train"))
    (diag,) = found(plan, "SF520")
    assert diag.severity is sg.Severity.error
    assert diag.location == Location(stage="train")
    assert diag.message.startswith("stages 'Train' and 'train' differ only in case")
    assert diag.hint == "rename one of them, e.g. 'train' to 'train_2'"
    assert sg.compile(experiment("Train", "train_2")).ok


def test_unicode_normalisation_counts_as_the_same_name() -> None:
    composed, decomposed = "r\u00e9sum\u00e9", "re\u0301sume\u0301"
    assert composed != decomposed and fold(composed) == fold(decomposed) == fold("RÉSUMÉ")
    assert [d.location.stage for d in found(sg.compile(experiment(composed, decomposed)),
                                            "SF520")] == [decomposed]


def test_loaders_of_a_stage_equal_but_for_case_are_an_error() -> None:
    exp = experiment()
    exp.add_stage("train", loaders={**LOADERS, "Valid": object()})
    (diag,) = found(sg.compile(exp), "SF520")
    assert diag.location == Location(stage="train", loader="Valid")
    assert "predictions/train_valid.pt" in diag.message
    twin = experiment("train", "finetune")  # the same loader names in two stages are fine
    assert sg.compile(twin).ok


def test_levels_can_be_lowered() -> None:
    exp = experiment()
    exp.add_stage("a:b", loaders=dict(LOADERS), lints={"SF519": "warning"})
    plan = sg.compile(exp)
    assert plan.ok and [d.severity for d in found(plan, "SF519")] == [sg.Severity.warning]
    exp = sg.Experiment("x", model=object(), criterion=object(), optimizer=object(),
                        lints={"SF520": "allow"})
    exp.add_stage("Train", loaders=dict(LOADERS))
    exp.add_stage("train", loaders=dict(LOADERS))
    assert sg.compile(exp).ok


def test_windows_device_names_are_allowed() -> None:
    assert problems("aux") == [] and problems("con.v2") == []  # `aux` is a common stage name


def test_safe_names_avoid_the_names_taken() -> None:
    assert safe_name("train", ["Train", "TRAIN_2"]) == "train_3"
    assert safe_name("/") == "unnamed"
