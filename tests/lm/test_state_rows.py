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


@pytest.mark.parametrize(
    "ids",
    [
        np.r_[np.arange(7, 5000), np.arange(6000, 200_000)],  # 2 runs, like Gemma's vocabulary
        np.arange(200_003),  # one run: every id
        np.r_[np.arange(0, 100_000, 2), np.arange(150_000, 200_000)],  # > 64 runs: gather
    ],
)
def test_log_probs_on_id_ranges_equal_the_gather(ids):
    """Vocabularies made of a few contiguous id ranges are sliced, not gathered: the same
    rows bit for bit."""
    from potentia.lm import backend

    x = torch.randn(3, 200_003, generator=torch.Generator().manual_seed(0)) * 4
    vocab_ids, eos_ids = torch.as_tensor(ids), torch.tensor([1, 17])
    got = log_probs(x, vocab_ids, eos_ids)
    runs = backend._runs(vocab_ids)
    assert (0 < len(runs) <= 2) if len(np.flatnonzero(np.diff(ids) != 1)) < 64 else runs == ()
    other = torch.as_tensor(ids.copy())
    backend._RUNS[id(other)] = (lambda: other, ())  # force the gather path for this tensor
    np.testing.assert_array_equal(got, log_probs(x, other, eos_ids))
    assert np.abs(got - _reference(x, vocab_ids, eos_ids)).max() < 1e-7


def test_log_probs_masked_logits_and_eos():
    x = torch.tensor([[0.0, -np.inf, 2.0, -np.inf], [1.0, 1.0, -np.inf, -np.inf]])
    vocab_ids, eos_ids = torch.tensor([0, 1, 2]), torch.tensor([3])
    got = log_probs(x, vocab_ids, eos_ids)
    ref = _reference(x, vocab_ids, eos_ids)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)  # float32 exponentials
    assert np.isneginf(got[:, -1]).all() and np.isneginf(got[0, 1])
