"""Resampling schemes: unbiased copy counts, exact for deterministic parts."""

import numpy as np
import pytest

from potentia.smc.resampling import SCHEMES, get_scheme


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_expected_counts(name):
    # E[#copies of i] = n w_i. Mean of 4000 replicates within 4 standard errors per index
    # (two-sided 6.3e-5 each; 4 schemes x 5 indices -> family false alarm <= 1.3e-3).
    rng = np.random.default_rng(0)
    w = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    n = 7
    f = SCHEMES[name]
    counts = np.array([np.bincount(f(rng, w, n), minlength=5) for _ in range(4000)])
    assert counts[:, 4].sum() == 0  # zero weight never drawn
    mean, se = counts.mean(0), counts.std(0, ddof=1) / np.sqrt(len(counts))
    for i in range(4):
        if se[i] == 0:
            assert mean[i] == pytest.approx(n * w[i])
        else:
            assert abs(mean[i] - n * w[i]) <= 4 * se[i], (name, i, mean[i], n * w[i])


@pytest.mark.parametrize("name", ["stratified", "systematic", "residual"])
def test_low_variance_schemes_bound_counts(name):
    rng = np.random.default_rng(1)
    w = np.array([0.5, 0.3, 0.2])
    for _ in range(200):
        c = np.bincount(SCHEMES[name](rng, w, 10), minlength=3)
        assert (np.abs(c - 10 * w) < 2).all()


def test_signature_and_errors():
    rng = np.random.default_rng(0)
    idx = get_scheme("multinomial")(rng, np.array([0.2, 0.8]), 5)
    assert idx.shape == (5,) and idx.dtype == np.int64
    assert get_scheme(len) is len
    with pytest.raises(ValueError, match="resampling"):
        get_scheme("nope")
