"""Reading a function's definition from its source (compiler/source.py), never running it."""

from __future__ import annotations

import inspect
from typing import Any

from stagegraph.compiler.source import definition


def plain(runner: Any) -> None:
    runner.output["logits"]


def margin_string(runner: Any) -> str:
    text = """
a string that reaches the margin
"""
    # a comment at the margin does not end the function either
    return text + runner.output["after_the_string"]


def signature_at_the_margin(
    runner: Any,
) -> None:
    runner.output["body"]


class Holder:
    @staticmethod
    def one_line(runner: Any) -> None: runner.output["one"]


def test_a_function_is_read_whole_with_file_lines() -> None:
    for function in (plain, margin_string, signature_at_the_margin, Holder.one_line):
        found = definition(function)
        assert found is not None, function.__name__
        assert found.tree.name == function.__name__
        assert found.text.rstrip() == inspect.getsource(function).rstrip()
        top = min([found.tree.lineno, *(d.lineno for d in found.tree.decorator_list)])
        assert found.first_line + top - 1 == function.__code__.co_firstlineno
        last = found.tree.body[-1]
        lines, start = inspect.getsourcelines(function)
        assert found.first_line + last.lineno - 1 == start + len(lines) - 1
        assert found.filename == __file__


def test_what_cannot_be_read_is_none() -> None:
    namespace: dict[str, Any] = {}
    exec("def made(runner):\n    runner.output['x']\n", namespace)
    assert definition(namespace["made"]) is None
    assert definition(len) is None and definition(object()) is None
