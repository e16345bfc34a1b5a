"""The notebooks in examples/ run top to bottom (nbmake), and are committed without outputs.

Each notebook runs in its own ``pytest --nbmake`` subprocess on a fresh kernel. The kernel
is ``python3`` resolved to this interpreter: ``JUPYTER_PATH`` puts this environment's
kernel specs first (ipykernel installs ``python3`` there) and jupyter_client starts a
spec whose command is ``python`` with ``sys.executable``. Nothing is written outside
the repository: no kernel is registered, no cache directory is created. The subprocess
loads only the nbmake plugin and an empty config (not the project's: its
``filterwarnings = error`` is for the suite, a notebook's warnings are its output).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
REAL_MODEL = {"json_pydantic"}  # notebooks that load an embedded real LM


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=os.environ.get("POTENTIA_TEST_THREADS", "1"),
        JUPYTER_PATH=os.pathsep.join(
            [str(Path(sys.prefix) / "share" / "jupyter"), env.get("JUPYTER_PATH", "")]
        ).rstrip(os.pathsep),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",  # only nbmake (-p): a faster start
    )
    return env


def test_there_are_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {
        "tour",
        "exact_vs_masking",
        "json_pydantic",
        "asap_learning_curve",
        "search_and_agents",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name} cell {i} has outputs; strip them"
            assert cell["execution_count"] is None, f"{path.name} cell {i} has a count"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=[pytest.mark.real_model] if p.stem in REAL_MODEL else [])
        for p in NOTEBOOKS
    ],
    ids=[p.stem for p in NOTEBOOKS],
)
def test_notebook_runs(path, tmp_path):
    """Execute every cell on a fresh ``python3`` kernel of this interpreter."""
    out = _nbmake(path, tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert "1 passed" in out.stdout, out.stdout[-2000:]


def _nbmake(*paths: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's config
    cmd = [sys.executable, "-m", "pytest", "-p", "nbmake.pytest_plugin", "--nbmake", "--nbmake-kernel=python3",
           "--nbmake-timeout=300", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
           "-c", str(tmp_path / "pytest.ini"), *map(str, paths)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path)


def test_python3_kernel_is_this_interpreter(tmp_path):
    """The notebooks run on this environment's Python, not whatever ``python`` is on PATH."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable"
        )
    ]
    path = tmp_path / "which_python.ipynb"
    nbformat.write(nb, path)
    bad = tmp_path / "fails.ipynb"  # and a failing cell does fail the run
    nb.cells = [nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    nbformat.write(nb, bad)
    out = _nbmake(path, bad, tmp_path=tmp_path)
    assert "1 failed, 1 passed" in out.stdout, out.stdout[-3000:]
    assert "FAILED fails.ipynb" in out.stdout and "boom" in out.stdout
