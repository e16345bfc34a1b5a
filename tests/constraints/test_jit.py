"""numba is loaded at the first compiled call, not at ``import potentia``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from potentia.constraints._jit import njit


def test_import_potentia_leaves_numba_unloaded():
    code = (
        "import sys, potentia as pt\n"
        "assert 'numba' not in sys.modules, 'numba imported by import potentia'\n"
        "c = pt.contains('ab')\n"  # an automaton constraint: compiles at first use
        "assert c.complete(list(b'xaby')) == 0.0 and c.complete(list(b'xy')) == -float('inf')\n"
        "assert 'numba' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_lazy_njit_compiles_once_and_agrees():
    def total(a):  # pragma: no cover - compiled
        s = 0
        for x in a:
            s += x
        return s

    f = njit(cache=False)(total)
    assert f.dispatcher is None and f.__name__ == "total"
    a = np.arange(10, dtype=np.int64)
    assert f(a) == 45
    d = f.dispatcher
    assert d is not None and d.py_func is total
    assert f(a[:3]) == 3 and f.dispatcher is d
