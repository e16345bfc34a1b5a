"""benchmarks/lm_step.py: its LM-head bound (ggml through ctypes) computes the real product.

The bound of a step is only a bound if the timed matmul is the head's product; this checks
the ggml path against numpy on small matrices of each weight type, with the hidden states
rounded to the weight type first, as ggml does before its dot products (then only the
float32 accumulation differs: ~1e-7 relative).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import lm_step  # noqa: E402


def _as(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` in ``dtype``: (raw ggml bytes, the rounded values as float64)."""
    if dtype == "F32":
        y = x.astype(np.float32)
        return y, y.astype(np.float64)
    if dtype == "F16":
        y = x.astype(np.float16)
        return y, y.astype(np.float64)
    t = torch.from_numpy(x).to(torch.bfloat16)
    return t.view(torch.int16).numpy(), t.double().numpy()


@pytest.mark.parametrize("dtype, gtype", [("F32", 0), ("F16", 1), ("BF16", 30)])
def test_ggml_head_matmul_equals_numpy(dtype, gtype):
    rng = np.random.default_rng(0)
    rows, k, n = 300, 64, 5
    raw, w = _as(rng.standard_normal((rows, k)).astype(np.float32), dtype)
    h = rng.standard_normal((n, k)).astype(np.float32)
    head = lm_step.GgmlHead(raw, gtype, rows=rows, k=k)
    try:
        got = head.matmul(h)
        assert len(head.times(h, 3)) == 3
    finally:
        head.close()
    want = (_as(h, dtype)[1] if dtype != "F32" else h.astype(np.float64)) @ w.T
    assert got.shape == (n, rows)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), dtype
