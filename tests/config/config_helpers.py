"""Helpers for the config tests: write a config file and load it, or collect its problems."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from stagegraph.config import ConfigExperiment, load_config
from stagegraph.loading import LoadError

FIXTURES = Path(__file__).parent / "fixtures"


def write(folder: Path, text: str, name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(folder: Path, text: str, *, overrides: Sequence[str] = (), static: bool = True,
         name: str = "exp.yaml") -> ConfigExperiment:
    return load_config(str(write(folder, text, name)), overrides=overrides, static=static)


def problems(folder: Path, text: str, *, overrides: Sequence[str] = (), static: bool = True,
             name: str = "exp.yaml") -> list[str]:
    """The problems loading ``text`` raises, each as printed, with the folder left out."""
    with pytest.raises(LoadError) as raised:
        load(folder, text, overrides=overrides, static=static, name=name)
    return [str(p).replace(f"{folder}/", "") for p in raised.value.problems]


def first_lines(items: Sequence[object]) -> list[str]:
    return [str(item).splitlines()[0] for item in items]
