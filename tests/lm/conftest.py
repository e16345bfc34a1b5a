"""Backend variants for the LM tests: every law and cache test runs on each of them.

A variant is a :class:`potentia.LM` on one backend; fp32 transformers is the reference.
Tolerances of *internal* consistency (cached vs uncached forward of the same weights, batch
vs single, the potential laws), in the relative metric of ``assert_logw_close``
(|Δ| / max(1, |log w|)), set in ``test_lm.py``:

* fp32, and bf16 on the tiny models: 1e-4 (fp32 forwards of different shapes differ by
  ~1e-6..1e-5; the tiny bf16 models measured ~1e-8: their GEMMs take one kernel path);
* bf16 on the real models: 0.25. bf16 keeps 8 bits of mantissa (a relative step of 2^-8
  per rounding, many roundings per layer), and a batched bf16 GEMM rounds differently from
  a one-row one, so one context in another batch shape moved by up to 0.08 in this metric
  on SmolLM2 (measured); 0.25 is three times that. A wrong context is far further away
  (``test_real_bf16_is_close_to_fp32_and_tolerance_tells_contexts_apart``), so these tests
  still fail on a wrong cache row. Distance from fp32 is checked mass-weighted (KL) there.
"""

from __future__ import annotations

import copy

import pytest
import torch


def _need_bf16() -> None:
    from potentia.lm.transformers_backend import bf16_supported

    if not bf16_supported():
        pytest.skip("this CPU has no bf16 arithmetic (the bf16 backend refuses it)")


@pytest.fixture(scope="session", params=["fp32", "bf16"])
def backend_lm(request, tiny_lm):
    """``tiny_lm`` (both cache layouts) on each backend variant: fp32, and a bf16 copy."""
    from potentia.lm import LM

    if request.param == "fp32":
        return tiny_lm
    _need_bf16()
    model = copy.deepcopy(tiny_lm.model).to(torch.bfloat16)
    return LM(model, tiny_lm.tokenizer, name=f"{tiny_lm.name}-bf16")


@pytest.fixture(scope="session")
def gemma_bf16():
    """The embedded Gemma 3 270M with bf16 weights (loaded once per session)."""
    from potentia.lm import LM

    _need_bf16()
    return LM.default(backend="transformers", dtype="bf16")


@pytest.fixture(scope="session")
def smollm_bf16():
    """The embedded SmolLM2 135M Instruct with bf16 weights (loaded once per session)."""
    from potentia.lm import LM

    _need_bf16()
    return LM.smollm2(dtype="bf16")
