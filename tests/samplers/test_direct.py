"""The direct sampler: exact per-token proper weighting by enumeration."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.models import FiniteLanguage, random_ngram
from potentia.testing import assert_properly_weighted, chi2_gof, enumerate_draws
from potentia.testing.strategies import toy_problems


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(problem=toy_problems(), data=st.data())
def test_properly_weighted_per_token(problem, data):
    target = problem.target
    V = len(target.vocab)
    L = data.draw(st.integers(0, 2))
    ctx = [data.draw(st.integers(0, V - 1)) for _ in range(L)]
    if target.prefix(ctx) == -np.inf:
        return
    assert_properly_weighted(pt.DirectSampler(target), target.state_from([ctx]), atol=1e-12)


def test_dead_row_gets_minus_inf():
    lm = random_ngram(np.random.default_rng(0), 2, 2)
    c = FiniteLanguage(lm.vocab, [(0,)])
    s = pt.DirectSampler(lm * c)
    st_ = (lm * c).state_from([[0]]).advance(np.array([0]))  # "aa" is not a prefix
    out = s.sample(st_, np.random.default_rng(0))
    assert out.log_w[0] == -np.inf


def test_rng_path_matches_distribution():
    # Pearson χ² of 20,000 vectorised draws against the exact next-token distribution,
    # false-alarm budget 1e-4.
    lm = random_ngram(np.random.default_rng(4), 4, 2, smoothing=0.1)
    s = pt.DirectSampler(lm)
    state = lm.init_state(20000)
    toks = s.sample(state, np.random.default_rng(0)).tokens
    p = np.exp(lm.logw_next([]))
    res = chi2_gof(toks.tolist(), dict(enumerate(p)), false_alarm=1e-4)
    assert res.passed, res


def test_enumerate_draws_probabilities_sum_to_one():
    paths = enumerate_draws(lambda d: (d(np.array([0.5, 0.5])), d(np.array([0.2, 0.0, 0.8]))))
    assert len(paths) == 4 and abs(sum(p for p, _ in paths) - 1) < 1e-12
