"""The rule registry (compiler/rules.py) is the single source: every code reported anywhere in the
package is in it, is reported at its default level, and the docs state that level.

The package's source is read with `ast`: every call that passes a literal ``"SF###"`` code (as
the first argument or ``code=``) is a report, and its severity is read from the call —
``diags.error/warning/info(...)``, a ``Severity.X`` argument (``Diagnostics.add``,
``Diagnostic(...)``), a ``*warn(...)`` helper (warning), ``LoadProblem(...)`` (an error unless
its ``severity=`` says otherwise).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

import stagegraph
from stagegraph.compiler.rules import LEVELS, RULES, closest_code, level_table, rule

PACKAGE = Path(stagegraph.__file__).parent
DOCS = PACKAGE.parent / "docs" / "diagnostics.md"
CODE = re.compile(r"SF\d{3}")

#: Call sites that report a code below its default on purpose, and why.
DEFERRED: dict[tuple[str, str], str] = {
    ("SF510", "info"): "compiled without a logdir (`validate EXP`), the plan cannot know the "
                       "run's: a note that the run needs one; `run` and `validate --logdir` "
                       "report the error",
    ("SF601", "warning"): "resuming with allow_plan_change=True names each change it ignores",
}
#: Levels another branch is changing: tolerated here, and each must still be needed (once the
#: change is merged, the test below fails: delete the entry).
PENDING: dict[tuple[str, str], str] = {}


@dataclasses.dataclass(frozen=True)
class Site:
    code: str
    severity: str | None  # None: the test cannot tell from the call
    where: str

    def __str__(self) -> str:
        return f"{self.where}: {self.code} reported as {self.severity}"


def literal_code(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(
            node.value):
        return node.value
    return None


def severity_of(call: ast.Call) -> str | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if isinstance(func, ast.Attribute) and name in ("error", "warning", "info"):
        return name
    for value in [*call.args, *(k.value for k in call.keywords)]:
        if (isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name)
                and value.value.id == "Severity"):
            return value.attr
    if name.endswith("warn"):
        return "warning"
    if name == "LoadProblem":  # an error unless it says severity="warning"
        return next((k.value.value for k in call.keywords if k.arg == "severity"
                     and isinstance(k.value, ast.Constant)), "error")
    return None


def report_sites() -> list[Site]:
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or getattr(node.func, "id", "") == "Rule":
                continue  # a registry entry is not a report
            code = literal_code(node.args[0] if node.args else None) or next(
                (literal_code(k.value) for k in node.keywords if k.arg == "code"), None)
            if code is not None:
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                sites.append(Site(code, severity_of(node), where))
    return sites


def codes_in_source() -> set[str]:
    """Every string literal of the package that is exactly a code."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            code = literal_code(node) if isinstance(node, ast.Constant) else None
            if code is not None:
                found.add(code)
    return found


# --- call sites and the registry -------------------------------------------------------------
def test_the_scan_finds_the_call_sites() -> None:
    sites = report_sites()
    assert len(sites) > 50
    assert any(s.code == "SF402" and s.severity == "error" and "order.py" in s.where
               for s in sites)
    assert {s.severity for s in sites} >= {"error", "warning"}


def test_every_call_site_reports_its_rules_default_level() -> None:
    wrong = [str(s) for s in report_sites() if s.severity != RULES[s.code].default
             and (s.code, s.severity) not in DEFERRED | PENDING]
    assert wrong == [], "report at the rule's default level (compiler/rules.py):\n" + "\n".join(
        wrong)


def test_every_code_in_the_source_is_in_the_registry() -> None:
    assert codes_in_source() - set(RULES) == set()


def test_deferrals_are_below_a_real_rules_default() -> None:
    for code, level in DEFERRED | PENDING:
        assert level in LEVELS and level != RULES[code].default, code


def test_pending_levels_are_still_pending() -> None:
    reported = {(s.code, s.severity) for s in report_sites()}
    stale = [key for key in PENDING if key not in reported]
    assert stale == [], "the change landed: delete these entries from PENDING above"


# --- the entries -----------------------------------------------------------------------------
@pytest.mark.parametrize("code", list(RULES))
def test_entry_is_complete(code: str) -> None:
    entry = RULES[code]
    assert entry.code == code and CODE.fullmatch(code)
    assert entry.default in LEVELS and entry.default != "allow"
    assert entry.summary and entry.summary[0].islower() and not entry.summary.endswith(".")
    assert entry.fix[0].isupper() and entry.fix.endswith("."), "the fix is one or two sentences"
    assert entry.fix.count(". ") <= 1 and len(entry.fix) <= 300
    assert entry.group
    assert bool(entry.why_fixed) is entry.fixed


def test_registry_is_sorted_and_frozen() -> None:
    assert list(RULES) == sorted(RULES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RULES["SF301"].default = "allow"  # type: ignore[misc]


def test_rule_lookup_names_the_codes() -> None:
    assert rule("SF301") is RULES["SF301"]
    with pytest.raises(KeyError, match="no diagnostic code 'SF999'; codes: SF001, "):
        rule("SF999")


@pytest.mark.parametrize(("text", "code"), [("SF3O1", "SF301"), ("sf107", "SF107"),
                                            ("510", "SF510"), ("SF 402", "SF402"),
                                            ("SF999", None), ("loss", None), (301, None)])
def test_closest_code(text: object, code: str | None) -> None:
    assert closest_code(text) == code


def test_misspelt_events_are_errors_by_default() -> None:
    # A plan that would silently do the wrong thing is an error by default.
    assert RULES["SF107"].default == "error" and not RULES["SF107"].fixed


# --- the docs page ---------------------------------------------------------------------------
def sections() -> dict[str, str]:
    parts = re.split(r"^### (SF\d{3})\b", DOCS.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_each_docs_section_opens_with_its_default_level_in_bold() -> None:
    for code, body in sections().items():
        stated = re.match(r"\s*\*\*(\w+)\*\*", body)
        assert stated is not None, f"### {code} does not open with its level in bold"
        level = stated.group(1)
        assert level == RULES[code].default or (code, level) in PENDING, (
            f"### {code} says **{level}**, the registry {RULES[code].default}")


def test_the_levels_table_is_generated_from_the_registry() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = re.search(r"^\| code \| default level \|.*?(?=\n\n)", text, flags=re.M | re.S)
    assert table is not None, "docs/diagnostics.md has no table of levels"
    assert table.group(0) == level_table(), (
        "the table in docs/diagnostics.md is stale; replace it with "
        "stagegraph.compiler.rules.level_table():\n" + level_table())
