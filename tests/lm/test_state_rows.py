"""The row conversion (logits -> log-probs over the vocabulary + EOS) against float64."""

import numpy as np
import pytest
import torch

from potentia.lm.backend import log_probs


def _reference(x: torch.Tensor, vocab_ids: torch.Tensor, eos_ids: torch.Tensor) -> np.ndarray:
    lp = torch.log_softmax(x.double(), dim=-1)
    eos = torch.logsumexp(lp[..., eos_ids], dim=-1)
    return torch.cat([lp[..., vocab_ids], eos[..., None]], dim=-1).numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 5])
def test_log_probs_match_float64_softmax(dtype, n):
    g = torch.Generator().manual_seed(n)
    N = 200_003  # a full-size output layer: float32 accumulation would be off by ~1e-5
    x = (torch.randn(n, N, generator=g) * 5 + 3).to(dtype)
    vocab_ids = torch.as_tensor(np.sort(np.random.default_rng(n).choice(N, N - 1000, False)))
    eos_ids = torch.tensor([1, 17])
    got = log_probs(x, vocab_ids, eos_ids)
    assert got.dtype == np.float64 and got.shape == (n, len(vocab_ids) + 1)
    ref = _reference(x, vocab_ids, eos_ids)
    assert np.abs(got - ref).max() < 1e-7
    one = log_probs(x[0], vocab_ids, eos_ids)
    assert one.shape == (len(vocab_ids) + 1,)
    np.testing.assert_array_equal(one, got[0])


def test_log_probs_masked_logits_and_eos():
    x = torch.tensor([[0.0, -np.inf, 2.0, -np.inf], [1.0, 1.0, -np.inf, -np.inf]])
    vocab_ids, eos_ids = torch.tensor([0, 1, 2]), torch.tensor([3])
    got = log_probs(x, vocab_ids, eos_ids)
    ref = _reference(x, vocab_ids, eos_ids)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)  # float32 exponentials
    assert np.isneginf(got[:, -1]).all() and np.isneginf(got[0, 1])
