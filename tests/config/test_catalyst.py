"""The Catalyst 20.x converter (config/catalyst*.py): the realistic fixture converted, every
translation rule, and every diagnostic located at the Catalyst file's line and column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stagegraph.config.catalyst import Conversion, convert_catalyst
from stagegraph.config.defaults import merge_defaults
from stagegraph.config.document import parse_document
from stagegraph.config.problems import Problems
from stagegraph.config.validation import validate

FIXTURE = Path(__file__).parent.parent / "fixtures" / "catalyst" / "config.yml"


def convert(tmp_path: Path, text: str, **options: Any) -> Conversion:
    path = tmp_path / "catalyst.yml"
    path.write_text(text, encoding="utf-8")
    return convert_catalyst(str(path), name="demo", **options)


def where(conversion: Conversion) -> set[tuple[str, int | None, int | None]]:
    return {(p.code, p.line, p.column) for p in conversion.problems}


def codes(conversion: Conversion) -> set[str]:
    return {p.code for p in conversion.problems}


# --- the realistic fixture ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture() -> Conversion:
    return convert_catalyst(str(FIXTURE), name="digits")


def test_the_fixture_converts_to_what_its_text_reads_back_as(fixture: Conversion) -> None:
    assert fixture.text is not None
    assert yaml.safe_load(fixture.text) == fixture.data
    data = fixture.data
    assert list(data) == ["experiment", "seed", "deterministic", "model", "criterion",
                          "optimizer", "handler", "defaults", "stages"]
    assert data["deterministic"] is True
    assert data["model"] == {"_target_": "digits_exp.DigitsNet", "hidden": 32, "num_classes": 10}
    assert data["criterion"] == {"_target_": "torch.nn.CrossEntropyLoss"}
    assert data["handler"] == {"_target_": "stagegraph.SupervisedHandler",
                               "input_key": "features", "output_key": "logits"}
    assert list(data["stages"]) == ["warmup", "train", "infer"]


def test_the_optimizer_options_carry_over(fixture: Conversion) -> None:
    shared, stages = fixture.data["optimizer"], fixture.data["stages"]
    assert shared == {"_target_": "torch.optim.Adam", "weight_decay": 0.0001,
                      "lr_linear_scaling": {"lr": 0.002, "base_batch_size": 64},
                      "layerwise_params": {"encoder.*": {"lr": 0.0005}},
                      "no_bias_weight_decay": True}  # Catalyst's default, written out
    # A stage's own optimizer_params are merged with the shared ones, as Catalyst merged them.
    assert stages["warmup"]["optimizer"] == {
        **shared, "layerwise_params": {"encoder.*": {"lr": 0.0001}}}
    assert stages["train"]["optimizer"] == {**shared, "load_from_previous_stage": True}
    assert stages["train"]["scheduler"] == {
        "_target_": "torch.optim.lr_scheduler.MultiStepLR", "milestones": [2, 3], "gamma": 0.3}


def test_stage_parameters_callbacks_and_loaders(fixture: Conversion) -> None:
    defaults, stages = fixture.data["defaults"], fixture.data["stages"]
    assert defaults["main_metric"] == "accuracy"  # Catalyst's accuracy01
    assert defaults["minimize_metric"] is False
    assert defaults["callbacks"] == {
        "loss": {"_target_": "CriterionCallback", "target_key": "targets",
                 "input_key": "logits", "metric_key": "loss"},
        "accuracy": {"_target_": "AccuracyCallback", "topk": [1, 3]},
        "optimizer": {"_target_": "OptimizerCallback", "grad_clip_norm": 5.0},
        "saver": {"_target_": "CheckpointCallback", "save_n_best": 2}}
    assert stages["train"]["callbacks"]["early_stopping"] == {
        "_target_": "EarlyStoppingCallback", "patience": 2, "metric": "accuracy",
        "minimize": False, "min_delta": 0.001}
    assert "auc" not in stages["train"]["callbacks"]  # no equivalent: a TODO comment instead
    assert stages["train"]["loaders"] == {"_target_": "digits_exp.loaders", "stage": "train",
                                          "batch_size": 16, "num_workers": 0}
    # Catalyst started each later stage from best.pth: the stage before loads its best back.
    for stage in ("warmup", "train"):
        assert stages[stage]["callbacks"]["saver"] == {
            "_target_": "CheckpointCallback", "load_best_on_stage_end": True}
    # Shared callbacks that did nothing in Catalyst's inference stage are left out of it.
    assert stages["infer"]["callbacks"] == {"optimizer": None, "saver": None}
    assert "# auc: left out. TODO(SF853): AUCCallback" in fixture.text
    assert "# callbacks.predictions: left out. TODO(SF853): InferCallback" not in fixture.text


def test_every_diagnostic_is_located_in_the_catalyst_file(fixture: Conversion) -> None:
    assert all(p.file == str(FIXTURE) for p in fixture.problems)
    assert where(fixture) == {
        ("SF852", 5, 10),   # model: DigitsNet
        ("SF856", 11, 3),   # args.logdir
        ("SF855", 15, 3),   # args.deterministic (also deterministic algorithms)
        ("SF856", 23, 18),  # main_metric: accuracy01
        ("SF854", 25, 5),   # checkpoint_data
        ("SF851", 28, 3),   # data_params
        ("SF855", 36, 16),  # optimizer: Adam (no_bias_weight_decay by default)
        ("SF855", 37, 5),   # weight_decay (Catalyst decoupled it)
        ("SF856", 71, 3),   # stage train (started from best.pth)
        ("SF855", 77, 7),   # load_from_previous_stage
        ("SF853", 93, 19),  # AUCCallback
        ("SF856", 97, 3),   # stage infer (best.pth; shared callbacks left out)
        ("SF853", 104, 19),  # InferCallback
    }
    assert [p.line for p in fixture.problems] == sorted(p.line or 0 for p in fixture.problems)


def test_the_output_validates_against_the_config_schema(fixture: Conversion) -> None:
    assert fixture.text is not None
    problems = Problems()
    document = parse_document(fixture.text, "digits.yaml", problems)
    assert document is not None
    merge_defaults(document)
    assert validate(document, problems) is not None, [str(p) for p in problems.items]


def test_the_output_validates_against_the_json_schema(fixture: Conversion) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from stagegraph.config.jsonschema import config_json_schema

    jsonschema.validate(fixture.data, config_json_schema())


def test_the_converted_experiment_runs(tmp_path: Path, fixture: Conversion) -> None:
    """End to end, in a fresh interpreter: `stagegraph validate` and `stagegraph run --check`
    of the converted file, beside the fixture's user code (model and loaders factory)."""
    assert fixture.text is not None
    (tmp_path / "digits.yaml").write_text(fixture.text, encoding="utf-8")
    source = FIXTURE.parent / "digits_exp"
    (tmp_path / "digits_exp").mkdir()
    (tmp_path / "digits_exp" / "__init__.py").write_text(
        (source / "__init__.py").read_text(encoding="utf-8"), encoding="utf-8")
    logdir = tmp_path / "logs"
    base = [sys.executable, "-m", "stagegraph"]
    valid = subprocess.run([*base, "validate", "digits.yaml", "--logdir", str(logdir)],
                           cwd=tmp_path, capture_output=True, text=True)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "no problems (3 stage(s)" in valid.stdout
    run = subprocess.run([*base, "run", "digits.yaml", "--check", "--logdir", str(logdir)],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stage 'infer': 1 epoch(s), inference" in run.stderr  # the console is on stderr
    # lr_linear_scaling: the encoder group's 1e-4 (warmup) * 32 / 64, then 5e-4 * 16 / 64.
    assert "[warmup] epoch 1/2 in" in run.stderr and "lr=5e-05" in run.stderr
    assert "lr=0.000125" in run.stderr


# --- translation rules -------------------------------------------------------------------------
STAGE = "  train:\n    state_params: {num_epochs: 2}\n"


def test_stage_params_of_catalyst_20_10_are_read_too(tmp_path: Path) -> None:
    done = convert(tmp_path, "stages:\n  stage_params: {main_metric: loss}\n  train:\n"
                   "    stage_params: {num_epochs: 3, valid_loader: valid_small}\n")
    assert done.data["defaults"] == {"main_metric": "loss"}
    assert done.data["stages"]["train"]["num_epochs"] == 3
    assert done.data["stages"]["train"]["valid_loader"] == "valid_small"


@pytest.mark.parametrize(("callback", "expected"), [
    ("{callback: CriterionCallback, input_key: y, output_key: out, prefix: ce}",
     {"_target_": "CriterionCallback", "target_key": "y", "input_key": "out",
      "metric_key": "ce"}),
    ("{callback: OptimizerCallback, accumulation_steps: 4, "
     "grad_clip_params: {func: clip_grad_value_, clip_value: 0.5}}",
     {"_target_": "OptimizerCallback", "accumulation_steps": 4, "grad_clip_value": 0.5}),
    ("{callback: AccuracyCallback, num_classes: 10}",
     {"_target_": "AccuracyCallback", "topk": [1, 3, 5]}),
    ("{callback: EarlyStoppingCallback, patience: 3}",
     {"_target_": "EarlyStoppingCallback", "patience": 3, "metric": "loss", "minimize": True,
      "min_delta": 1e-6}),
    ("{callback: CheckpointCallback, load_on_stage_end: best_full}",
     {"_target_": "CheckpointCallback", "load_best_on_stage_end": True}),
    ("{callback: SchedulerCallback, mode: null}", {"_target_": "SchedulerCallback"}),
    ("{callback: TensorboardLogger}", {"_target_": "TensorBoardLogger", "log_batch_every": 1}),
    ("{callback: MyCallback, alpha: 2}", {"_target_": "src.MyCallback", "alpha": 2}),
])
def test_callbacks_and_their_arguments(tmp_path: Path, callback: str,
                                       expected: dict[str, Any]) -> None:
    done = convert(tmp_path, f"args: {{expdir: src}}\nstages:\n{STAGE}"
                   f"    callbacks_params:\n      cb: {callback}\n")
    assert done.data["stages"]["train"]["callbacks"]["cb"] == expected


def test_a_stage_naming_another_class_gets_the_merged_settings(tmp_path: Path) -> None:
    done = convert(tmp_path, "stages:\n  optimizer_params: {optimizer: Adam, lr: 0.1, "
                   "weight_decay: 0.0}\n" + STAGE + "    optimizer_params: {optimizer: SGD, "
                   "momentum: 0.9}\n")
    assert done.data["optimizer"] == {"_target_": "torch.optim.Adam", "lr": 0.1,
                                      "weight_decay": 0.0}
    assert done.data["stages"]["train"]["optimizer"] == {
        "_target_": "torch.optim.SGD", "lr": 0.1, "weight_decay": 0.0, "momentum": 0.9}


def test_lr_linear_scaling_replaces_lr_and_gets_catalysts_base(tmp_path: Path) -> None:
    done = convert(tmp_path, "stages:\n  optimizer_params: {optimizer: SGD, lr: 0.1, "
                   "lr_linear_scaling: {lr: 0.2}}\n" + STAGE)
    assert done.data["optimizer"] == {"_target_": "torch.optim.SGD", "lr_linear_scaling": {
        "lr": 0.2, "base_batch_size": 256}}
    assert ("SF856", 2, 38) in where(done)  # at lr, left out


def test_args_and_distributed_params(tmp_path: Path) -> None:
    done = convert(tmp_path, "args: {seed: 7, timeit: true, check: true, fp16: true}\n"
                   "distributed_params: {rank: 0, syncbn: true}\nstages:\n" + STAGE)
    assert done.data["seed"] == 7
    assert done.data["defaults"]["precision"] == "amp"
    assert done.data["defaults"]["callbacks"] == {"timer": {"_target_": "TimerCallback"}}
    assert {("SF856", 1, 31), ("SF855", 1, 44), ("SF856", 2, 22), ("SF854", 2, 31)} <= where(
        done)


def test_a_check_run_callback_becomes_the_stages_check_run(tmp_path: Path) -> None:
    done = convert(tmp_path, "stages:\n" + STAGE + "    callbacks_params:\n"
                   "      check: {callback: CheckRunCallback, num_batch_steps: 3}\n")
    assert done.data["stages"]["train"]["check_run"] is True
    assert "callbacks" not in done.data["stages"]["train"]
    assert ("SF855", 5, 7) in where(done)


@pytest.mark.parametrize(("text", "code", "line", "column"), [
    ("stages:\n  train:\n    state_parms: {num_epochs: 2}\n", "SF857", 3, 5),
    ("stages:\n  optimizer_params: {lr: 0.1}\n" + STAGE, "SF858", 2, 21),
    ("model_params: {_key_value: true, a: {model: A}}\nstages:\n" + STAGE, "SF854", 1, 28),
    ("stages:\n" + STAGE + "    callbacks_params:\n      m: {callback: MetricAggregationCallback}"
     "\n", "SF853", 5, 21),
    ("stages:\n" + STAGE + "    callbacks_params:\n      loss: {callback: CriterionCallback, "
     "multiplier: 0.5}\n", "SF854", 5, 43),
    ("stages:\n" + STAGE + "    callbacks_params:\n      opt: {callback: OptimizerCallback, "
     "grad_clip_params: {func: clip_grad_norm_, max_norm: 1, norm_type: 1}}\n", "SF854", 5, 42),
    ("runner_params: {runner: MyRunner}\nstages:\n" + STAGE, "SF854", 1, 25),
    ("monitoring_params: {project: x}\nstages:\n" + STAGE, "SF854", 1, 1),
])
def test_diagnostics_point_at_the_setting(tmp_path: Path, text: str, code: str, line: int,
                                          column: int) -> None:
    done = convert(tmp_path, text)
    assert done.ok
    assert (code, line, column) in where(done), [str(p) for p in done.problems]


@pytest.mark.parametrize("text", ["model_params: {model: Net}\n", "stages: [a, b]\n",
                                  "experiment: x\nstages: {train: {num_epochs: 1}}\n"])
def test_what_is_not_a_catalyst_config_is_not_converted(tmp_path: Path, text: str) -> None:
    done = convert(tmp_path, text)
    assert not done.ok and done.text is None
    assert codes(done) == {"SF850"}


def test_a_yaml_error_is_located_and_nothing_is_converted(tmp_path: Path) -> None:
    done = convert(tmp_path, "stages:\n  train: [\n")
    assert not done.ok and codes(done) == {"SF801"}


def test_the_data_factory_can_be_named(tmp_path: Path) -> None:
    done = convert(tmp_path, "stages:\n" + STAGE, data_factory="my.data:make")
    assert done.data["stages"]["train"]["loaders"] == {"_target_": "my.data:make",
                                                       "stage": "train"}


def test_converting_imports_no_torch_and_no_user_code() -> None:
    code = ("import sys\n"
            "from stagegraph.config.catalyst import convert_catalyst\n"
            f"assert convert_catalyst({str(FIXTURE)!r}).ok\n"
            "assert 'torch' not in sys.modules and 'digits_exp' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
