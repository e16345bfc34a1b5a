"""Examples run as smoke tests with tiny settings (real-model ones are marked)."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_toy_exactness_example(capsys):
    _load("toy_exactness").main(runs=120)
    out = capsys.readouterr().out
    assert "exact log Z" in out and "χ²" in out
