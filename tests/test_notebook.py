"""The claims notebook runs top to bottom on the shipped example sweep, with the README's command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "claims.ipynb"
# the README's one command (extra `notebook`): the executed notebook as a page to open in a browser
COMMAND = "jupyter nbconvert --execute --to html notebooks/claims.ipynb --output-dir results/notebook"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_readme_command_runs_the_notebook(tmp_path):
    pytest.importorskip("nbconvert", reason="pip install -e '.[notebook]' (or '.[dev]')")
    assert COMMAND in (ROOT / "README.md").read_text()
    args = COMMAND.split()
    args[args.index("--output-dir") + 1] = str(tmp_path)  # not into the checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]  # nbconvert stops on the first failing cell
    page = (tmp_path / "claims.html").read_text()
    assert "Claim 1" in page and "Claim 2" in page and "verdict:" in page
    assert page.count("data:image/png;base64") >= 4  # lr sweep, depth, depth curves, placement
