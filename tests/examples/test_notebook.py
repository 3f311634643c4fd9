"""examples/digits.ipynb runs in a real Jupyter kernel and shows what a notebook user should see.

The kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH), so it imports
the stagegraph of this checkout; its IPython profile, runtime files and temporary logdir stay under
pytest's temporary directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).parent.parent.parent
NOTEBOOK = ROOT / "examples" / "digits.ipynb"
KERNEL = "stagegraph-test"
WIDGET = "application/vnd.jupyter.widget-view+json"
HAS_DOT = shutil.which("dot") is not None


def write_kernelspec(jupyter_path: Path) -> None:
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "stagegraph tests", "language": "python"}
    folder = jupyter_path / "kernels" / KERNEL
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("jupyter")
    write_kernelspec(home / "share")
    (home / "tmp").mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if not HAS_DOT:  # graphviz cannot draw: leave out the cell that only draws
        notebook.cells = [c for c in notebook.cells if "to_graphviz()" not in c.source]
    env = {"JUPYTER_PATH": str(home / "share"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(home / "ipython"),
           "TMPDIR": str(home / "tmp"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        client = nbclient.NotebookClient(
            notebook, kernel_name=KERNEL, timeout=120,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
    yield notebook


def outputs(notebook: Any, marker: str) -> list[Any]:
    """The outputs of the one code cell whose source contains ``marker``."""
    [cell] = [c for c in notebook.cells if c.cell_type == "code" and marker in c.source]
    return list(cell.outputs)


def result(notebook: Any, marker: str) -> dict[str, Any]:
    """The rich data a cell displays as its result."""
    [out] = [o for o in outputs(notebook, marker) if o.output_type == "execute_result"]
    return dict(out.data)


def test_the_plan_displays_a_summary_and_its_diagram(executed: Any) -> None:
    data = result(executed, "sg.compile(experiment)")
    markdown = data["text/markdown"]
    assert "Plan for experiment `digits`: 4 stage(s)" in markdown
    assert ("| 2 | `train` | `pretrain` | 20 | accuracy (max) | `train`, `valid` | `accuracy`, "
            "`criterion`, `metric_aggregation`, `optimizer`, `validation`, `scheduler`, "
            "`console`, `early_stopping`, `checkpoint` |") in markdown
    assert "<th style=\"text-align:left\">callbacks in order</th>" in data["text/html"]
    assert data["text/plain"].startswith("plan for experiment 'digits'")
    if HAS_DOT:
        assert "<svg" in data["text/html"] and data["image/svg+xml"].lstrip().startswith("<?xml")


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
def test_the_diagram_is_svg(executed: Any) -> None:
    svg = result(executed, "to_graphviz()")["image/svg+xml"]
    assert "<svg" in svg
    for stage in ("pretrain", "train", "finetune", "infer"):
        assert re.search(rf"\b{stage}</text>", svg), stage  # each stage's label


def test_explain_shows_the_chain_of_edges(executed: Any) -> None:
    data = result(executed, "plan.explain(")
    lines = data["text/markdown"].splitlines()
    assert lines[0] == ("`accuracy` **runs before** `early_stopping` in stage `train`, through 3 "
                        "hard edge(s):")
    assert lines[-1].startswith("| 3 | `validation` | `early_stopping` | dataflow | 'validation' "
                                "writes 'valid\\_metric.accuracy'")
    assert "<td style=\"text-align:left\"><code>metric_aggregation</code></td>" in data["text/html"]


def test_a_stage_shows_its_callbacks_in_order(executed: Any) -> None:
    data = result(executed, 'plan.stage("train")')
    markdown = data["text/markdown"]
    assert markdown.startswith("**Stage 2** `train`: 20 epoch(s), main metric accuracy "
                               "(max), valid loader 'valid', after `pretrain`")
    rows = [line.split(" | ")[1] for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert rows == ["`accuracy`", "`criterion`", "`metric_aggregation`", "`optimizer`",
                    "`validation`", "`scheduler`", "`console`", "`early_stopping`",
                    "`checkpoint`"]
    assert "<strong>Stage 2</strong> <code>train</code>" in data["text/html"]


def test_diagnostics_display_as_a_table(executed: Any) -> None:
    data = result(executed, "plan.diagnostics")
    markdown = data["text/markdown"]
    assert markdown.startswith("**2 diagnostic(s)**: 0 error(s), 0 warning(s), 2 info")
    assert "| info | `SF510` | stage 'train' &gt; callback 'checkpoint' |" in markdown
    html = data["text/html"]
    assert "<td style=\"text-align:left\">stage &#x27;infer&#x27; &gt; callback " in html


def test_the_check_run_shows_progress_and_finishes(executed: Any) -> None:
    outs = outputs(executed, "sg.run(")
    text = "".join(o.text for o in outs if o.output_type == "stream")
    # The console writes to stdout in a notebook (stderr would be shown on a red ground).
    streams = [o for o in outs if o.output_type == "stream"]
    assert all(o.name == "stdout" for o in streams if "stage '" in o.text)
    assert "stage 'train'" in "".join(o.text for o in streams if o.name == "stdout")
    assert "held-out test accuracy:" in text  # the experiment's own callback, the last stage
    for stage in ("pretrain", "train", "finetune", "infer"):
        assert f"'{stage}'" in text
    accuracy = result(executed, "sg.run(")["text/plain"]  # test_accuracy.txt in the logdir
    assert re.fullmatch(r"'0\.\d{4}\\n'", accuracy), accuracy
    widgets = [o for o in outs if o.output_type == "display_data" and WIDGET in o.data]
    if importlib.util.find_spec("ipywidgets") is None:
        assert widgets == []
        return
    # One bar per loader and epoch (2 epochs x 2 loaders in 3 stages, then infer), each full.
    loaders = [re.findall(r"\b(train|valid|infer)\b", w.data["text/plain"]) for w in widgets]
    assert loaders == [["train"], ["valid"]] * 6 + [["infer"]]
    for widget in widgets:
        done, total = progress(executed, widget.data[WIDGET]["model_id"])
        assert done == total > 0


def progress(notebook: Any, model_id: str) -> tuple[float, float]:
    """The final value and maximum of a tqdm widget's bar, from the notebook's widget state."""
    state = notebook.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    refs = state[model_id]["state"]["children"]
    children = [state[ref.removeprefix("IPY_MODEL_")] for ref in refs]
    [bar] = [c["state"] for c in children if c["model_name"] == "FloatProgressModel"]
    return bar["value"], bar["max"]
