"""The house layout: no import circle, no import up the layers (lazy imports count)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "import_graph.py"
LAYERS = ["potentials", "constraints,lm,models,result,plots", "samplers", "smc", "asap,search"]
LAYERS += ["testing", "api,cli,viz,agents,interop,many"]


@pytest.mark.skipif(not TOOL.is_file(), reason="../shared/tools/import_graph.py not present")
def test_no_cycles_no_upward_imports():
    env = {**os.environ, "STRICT": "1"}
    out = subprocess.run(
        [sys.executable, str(TOOL), str(ROOT / "potentia"), *LAYERS],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cycles" in out.stdout and "upward: 0" in out.stdout


def test_every_room_is_listed():
    """A new room must take its place in the layers (and in docs/architecture.md)."""
    rooms = {
        p.name for p in (ROOT / "potentia").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    rooms |= {p.stem for p in (ROOT / "potentia").glob("*.py") if p.stem != "__init__"}
    listed = {r for layer in LAYERS for r in layer.split(",")}
    assert rooms <= listed, f"rooms missing from the layers: {sorted(rooms - listed)}"
