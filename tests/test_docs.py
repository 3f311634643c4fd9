"""The docs' examples are real: every docs/*.md page runs, in order, in one fresh namespace.

Fences the harness understands (the first word is the language, so GitHub renders them all):

- ```` ```python ```` — executed; ```` ```python no-run ```` is skipped;
- ```` ```python file=NAME ```` — written to NAME in the page's working directory, not executed
  (so is a block of any other language with ``file=NAME``, such as ```` ```yaml file=exp.yaml ````);
- ```` ```output ```` — what the python block just before it prints, exactly;
- ```` ```console verified ```` — each ``$ stagegraph ...`` line is run (in this process, through
  ``stagegraph.cli.main``) and its output, stdout then stderr, compared with the lines under it;
  ``$ echo $?`` shows the exit code of the command before it.

In expected output, ``...`` matches any text, across lines too. Each page runs with its own
temporary directory as the working directory.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from stagegraph.cli import main

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
#: Pages other engineers are writing; the index links them before they exist.
PENDING = {"runtime.md", "callbacks.md", "example.md"}


@dataclass(frozen=True)
class Block:
    info: str
    code: str
    line: int  # 1-based line of the first line of code in the page

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def options(self) -> list[str]:
        return self.info.split()[1:]


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [Block(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start(2)) + 1)
            for m in FENCE.finditer(text)]


def matches(expected: str, actual: str) -> bool:
    """Exact, but trailing spaces and blank lines are ignored and ``...`` matches anything."""
    def tidy(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())

    pattern = ".*?".join(re.escape(part) for part in tidy(expected).split("..."))
    return re.fullmatch(pattern, tidy(actual), flags=re.S) is not None


def run_python(block: Block, page: Path, namespace: dict[str, object]) -> str:
    # Padding keeps tracebacks pointing at the page's own line numbers.
    code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    return out.getvalue()


def run_console(block: Block, page: Path) -> None:
    status = 0
    for command, expected in commands(block):
        if command == "echo $?":
            actual = f"{status}\n"
        else:
            argv = shlex.split(command)
            assert argv[0] == "stagegraph", f"{page.name}:{block.line}: only stagegraph runs"
            actual, status = stagegraph(argv[1:])
        assert matches(expected, actual), (
            f"{page.name}:{block.line}: `{command}` printed\n{actual}\nexpected\n{expected}")


def stagegraph(args: list[str]) -> tuple[str, int]:
    """Run the command in this process (as fast as it gets): its stdout, then stderr, and code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(args)
        except SystemExit as exit_:  # usage errors
            status = exit_.code if isinstance(exit_.code, int) else 1
    return out.getvalue() + err.getvalue(), status


def commands(block: Block) -> list[tuple[str, str]]:
    found: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in found]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps usage lines to the terminal
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # restored afterwards
    try:
        run_page(page, tmp_path)
    finally:  # forget the page's files imported as modules (the CLI loads `digits.py` as digits)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
                del sys.modules[name]


INSTALLED = tuple(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib",
                                                          "platlib"))


def forget_user_module(name: str) -> None:
    """Drop ``name`` from ``sys.modules`` when another test imported a user file of that name
    (the examples' ``digits``): the page's file of that name is another. Installed and standard
    modules (a page's ``json.py`` shadowing the standard one) stay."""
    module = sys.modules.get(name)
    origin = str(getattr(module, "__file__", None) or "")
    if module is not None and origin and not origin.startswith(INSTALLED):
        del sys.modules[name]


def run_page(page: Path, tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    printed: str | None = None
    for block in blocks(page):
        target = next((o[5:] for o in block.options if o.startswith("file=")), None)
        if target is not None:
            (tmp_path / target).write_text(block.code, encoding="utf-8")
            forget_user_module(target.removesuffix(".py").replace("/", "."))
            printed = None
        elif block.language == "python" and "no-run" not in block.options:
            printed = run_python(block, page, namespace)
        elif block.language == "output":
            assert printed is not None, f"{page.name}:{block.line}: output without code"
            assert matches(block.code, printed), (
                f"{page.name}:{block.line}: printed\n{printed}\nexpected\n{block.code}")
        elif block.language == "console" and "verified" in block.options:
            run_console(block, page)


def emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "stagegraph").rglob("*.py"):
        codes.update(re.findall(r"[\"'](SF\d{3})[\"']", path.read_text(encoding="utf-8")))
    return codes


def test_every_emitted_code_is_documented() -> None:
    text = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    headed = set(re.findall(r"^### (SF\d{3})\b", text, flags=re.M))
    assert emitted_codes() - headed == set(), "document these codes in docs/diagnostics.md"
    assert headed - emitted_codes() == set(), "docs/diagnostics.md documents unknown codes"


def test_every_documented_code_has_an_example_that_asserts_it() -> None:
    text = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    sections = re.split(r"^### (SF\d{3})\b", text, flags=re.M)
    for code, body in zip(sections[1::2], sections[2::2], strict=True):
        assert re.search(rf"^assert .*\"{code}\"", body, flags=re.M), f"{code} has no example"


PLAN_MODELS = ["ExecutionPlan", "StageEdge", "StagePlan", "LoaderPlan", "HandlerPlan",
               "CompilePlan",
               "CallbackPlan", "EdgePlan", "MigrationPlan", "Diagnostic", "Location"]


def test_plan_format_documents_every_field() -> None:
    import stagegraph.compiler as compiler

    text = (DOCS / "plan-format.md").read_text(encoding="utf-8")
    sections = dict(zip(*[iter(re.split(r"^## `(\w+)`$", text, flags=re.M)[1:])] * 2,
                        strict=True))
    for name in PLAN_MODELS:
        documented = set(re.findall(r"^\| `(\w+)` \|", sections[name], flags=re.M))
        assert documented == set(getattr(compiler, name).model_fields), name


def test_index_links_every_page_and_links_resolve() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", index))
    assert {p.name for p in PAGES} - {"index.md"} <= linked
    for page in PAGES:
        for target in re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]*)?\)", page.read_text("utf-8")):
            if (page.parent / target).exists() or Path(target).name in PENDING:
                continue
            pytest.fail(f"{page.name} links to missing {target}")
