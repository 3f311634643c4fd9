"""The config format's JSON Schema (stagegraph schema --config) accepts every example config and
rejects broken ones, as an editor would check them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from config_helpers import FIXTURES

from stagegraph.config.jsonschema import config_json_schema

jsonschema = pytest.importorskip("jsonschema")

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
CONFIGS = sorted([*EXAMPLES.glob("*.yaml"), *FIXTURES.glob("*.yaml"), *FIXTURES.glob("*.json")])


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_example_config_is_valid(validator: Any, path: Path) -> None:
    errors = [f"{e.json_path}: {e.message[:200]}" for e in validator.iter_errors(read(path))]
    assert errors == []


def broken(change: str) -> Any:
    config = read(EXAMPLES / "digits.yaml")
    stages = config["stages"]
    if change == "unknown top-level key":
        config["optimiser"] = {"_target_": "torch.optim.Adam"}
    elif change == "epochs as text":
        stages["train"]["num_epochs"] = "20"
    elif change == "unknown stage key":
        stages["train"]["num_epoch"] = 20
    elif change == "misspelt built-in callback":
        stages["train"]["callbacks"]["early_stopping"]["_target_"] = "EarlyStopingCallback"
    elif change == "unknown argument of a built-in callback":
        stages["train"]["callbacks"]["early_stopping"]["patiense"] = 4
    elif change == "argument of the wrong type":
        stages["train"]["callbacks"]["early_stopping"]["patience"] = "four"
    elif change == "target without a module path":
        config["model"]["_target_"] = "make model"
    elif change == "no stages":
        del config["stages"]
    elif change == "precision":
        stages["finetune"]["precision"] = "fp16"
    return config


CHANGES = ["unknown top-level key", "epochs as text", "unknown stage key",
           "misspelt built-in callback", "unknown argument of a built-in callback",
           "argument of the wrong type", "target without a module path", "no stages",
           "precision"]


@pytest.mark.parametrize("change", CHANGES)
def test_broken_configs_are_rejected(validator: Any, change: str) -> None:
    assert list(validator.iter_errors(broken(change))), change


def test_interpolation_and_null_are_accepted_where_typed(validator: Any) -> None:
    config = copy.deepcopy(read(EXAMPLES / "digits.yaml"))
    config["stages"]["finetune"]["num_epochs"] = "${stages.train.num_epochs}"
    config["stages"]["finetune"]["main_metric"] = None
    assert list(validator.iter_errors(config)) == []


def test_every_field_is_described() -> None:
    schema = config_json_schema()
    for name, definition in [("ConfigFile", schema), *schema["$defs"].items()]:
        for field, spec in definition.get("properties", {}).items():
            if name == "Callback" or field == "$schema":
                continue
            assert spec.get("description"), f"{name}.{field} has no description"
