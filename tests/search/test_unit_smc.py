"""Unit-SMC targets what token-level SMC targets: Ẑ and χ² against exact enumeration.

False-alarm budget (as in tests/smc/test_engine.py):
- Ẑ test: mean of R = 100 Ẑ within 4 standard errors (floor Z / R) of the exact Z;
  two-sided normal tail 6.3e-5 per example, 25 examples → ≤ 0.2 % family-wide;
- χ² on rejection-corrected exact draws at α = 1e-4 per example, 25 examples → ≤ 0.3 %.
Hypothesis is derandomized and every run seeded: failures are reproducible.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.models import enumerate_target, random_ngram
from potentia.search.unit_smc import unit_smc
from potentia.testing import assert_gof, assert_mean, smc_exact_draws
from potentia.testing.strategies import soft_potentials, toy_problems

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
UNITS = [None, 1, 2, "a", "b"]


@SETTINGS
@given(
    problem=toy_problems(),
    n=st.sampled_from([2, 4]),
    unit=st.sampled_from(UNITS),
    ess=st.sampled_from([0.5, 1.0]),
    twist=st.booleans(),
    data=st.data(),
)
def test_unit_smc_log_z_unbiased(problem, n, unit, ess, twist, data):
    psi = data.draw(soft_potentials(problem.lm.vocab)) if twist else None
    exact = enumerate_target(problem.target, problem.max_len)
    sampler = pt.DirectSampler(problem.target)
    R = 100
    zs = [
        np.exp(
            unit_smc(sampler, unit, n, problem.max_len, rng=s, ess_threshold=ess, twist=psi).log_z
        )
        for s in range(R)
    ]
    Z = np.exp(exact.log_z)
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / R)


@SETTINGS
@given(
    problem=toy_problems(),
    n=st.sampled_from([2, 4]),
    unit=st.sampled_from(UNITS),
    scheme=st.sampled_from(["multinomial", "systematic"]),
)
def test_unit_smc_posterior_chi2(problem, n, unit, scheme):
    assume(problem.constraint is None or problem.constraint.hard)
    exact = enumerate_target(problem.target, problem.max_len)
    assume(exact.log_z > np.log(0.25))
    sampler = pt.DirectSampler(problem.target)
    runs = (
        unit_smc(sampler, unit, n, problem.max_len, rng=s, ess_threshold=1.0, resampling=scheme)
        for s in range(200)
    )
    draws = smc_exact_draws(runs, np.random.default_rng(1), log_bound=0.0)
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def test_resamples_only_at_boundaries():
    lm = random_ngram(np.random.default_rng(4), 3, eos_boost=0.2, smoothing=0.1)
    s = pt.DirectSampler(lm)
    r = unit_smc(s, 3, 8, 10, rng=0, ess_threshold=1.0)
    assert r.resampled_at and all(t % 3 == 0 for t in r.resampled_at)
    none = unit_smc(s, None, 8, 10, rng=0, ess_threshold=1.0)
    assert none.resampled_at == []
    tok = pt.smc.smc(s, 8, 10, rng=0, ess_threshold=1.0)
    one = unit_smc(s, 1, 8, 10, rng=0, ess_threshold=1.0)  # k = 1: token-level SMC exactly
    assert one.contexts == tok.contexts and one.log_z == tok.log_z
    assert "unit" in one.extra


def test_budget_and_bad_arguments():
    lm = random_ngram(np.random.default_rng(4), 3, eos_boost=0.2)
    s = pt.DirectSampler(lm)
    r = unit_smc(s, "a", 4, 20, rng=0, max_lm_calls=2)
    assert r.n_steps <= 3 and "max_lm_calls" in r.extra["stopped_by"]
    with pytest.raises(TypeError, match="unit"):
        unit_smc(s, 2.5, 4, 5)
    with pytest.raises(ValueError, match="n_particles"):
        unit_smc(s, 2, 0, 5)
    with pytest.raises(ValueError, match="max_lm_calls"):
        unit_smc(s, 2, 2, 5, max_lm_calls=0)
