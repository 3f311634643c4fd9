"""Imports flow one way: graph <- compiler <- runtime <- cli, and graph <- config <- cli; only
the runtime imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "stagegraph"
LAYERS = ["graph", "compiler", "runtime", "cli", "config"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "stagegraph" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def test_graph_and_compiler_never_import_torch_or_later_layers() -> None:
    for layer in ("graph", "compiler"):
        allowed = LAYERS[: LAYERS.index(layer) + 1]
        for path in (PACKAGE / layer).rglob("*.py"):
            for module in imported_modules(path):
                assert module.split(".")[0] != "torch", f"{path} imports {module}"
                target = layer_of(module)
                assert target is None or target in allowed, f"{path} imports {module}"


def test_config_imports_neither_torch_nor_the_runtime_nor_the_cli() -> None:
    # The built-in callbacks and the runtime's optimizer builder are named by string and
    # imported when needed (stagegraph.config.callbacks.BUILTINS, factories.BUILD_OPTIMIZER).
    for path in (PACKAGE / "config").rglob("*.py"):
        for module in imported_modules(path):
            assert module.split(".")[0] != "torch", f"{path} imports {module}"
            assert layer_of(module) in (None, "graph", "compiler", "config"), (
                f"{path} imports {module}")


def test_runtime_does_not_import_cli() -> None:
    for path in (PACKAGE / "runtime").rglob("*.py"):
        assert all(layer_of(m) != "cli" for m in imported_modules(path)), path


def test_importing_stagegraph_and_compiling_does_not_load_torch() -> None:
    code = (
        "import sys, stagegraph as sg\n"
        "exp = sg.Experiment('x', model=lambda: None)\n"
        "exp.add_stage('train', loaders={'train': [], 'valid': []})\n"
        "plan = sg.compile(exp); str(plan); plan.to_json(); plan.to_graphviz()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
