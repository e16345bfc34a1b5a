"""The checks can fail: plant known bugs and assert that the checkers catch each one.

Each test runs the *same* check as the real suite on a fixed problem, with one bug
planted, and expects the check to raise.
"""

import numpy as np
import pytest

import potentia as pt
import potentia.smc.engine as engine
from potentia.models import DFA, enumerate_target, random_ngram
from potentia.samplers.base import SampleOut
from potentia.smc import smc
from potentia.testing import (
    assert_gof,
    assert_mean,
    assert_potential_laws,
    assert_properly_weighted,
    smc_exact_draws,
)


def _problem():
    rng = np.random.default_rng(5)
    lm = random_ngram(rng, 3, order=2, eos_boost=1.5, smoothing=0.2)
    dfa = DFA(lm.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    return lm, dfa, lm * dfa


def _z_check(sampler, L=3, R=200, **kw):
    exact = enumerate_target(
        sampler.target * kw["critic"] if kw.get("critic") else sampler.target, L
    )
    zs = [np.exp(smc(sampler, 4, L, rng=s, **kw).log_z) for s in range(R)]
    Z = np.exp(exact.log_z)
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / R)


def _chi2_check(sampler, L=3, R=600, **kw):
    exact = enumerate_target(sampler.target, L)
    runs = (smc(sampler, 4, L, rng=s, **kw) for s in range(R))
    draws = smc_exact_draws(runs, np.random.default_rng(1))
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


class ConstantFactorDirect(pt.DirectSampler):
    """Bug: weight off by a constant factor 1.05."""

    def sample(self, state, rng, draw=None):
        out = super().sample(state, rng, draw)
        return SampleOut(out.tokens, out.log_w + np.log(1.05), out.target_evals)


class TemperedDirect(pt.DirectSampler):
    """Bug: samples from a tempered distribution but reports the untempered mass."""

    def sample(self, state, rng, draw=None):
        lw = state.logw_next()
        tot = np.logaddexp.reduce(lw, axis=1)
        p = np.exp(0.7 * (lw - tot[:, None]))
        p /= p.sum(1, keepdims=True)
        if draw is None:
            toks = np.array([rng.choice(len(r), p=r) for r in p])
        else:
            toks = np.array([draw(r) for r in p])
        return SampleOut(toks, tot, len(lw))


def test_correct_code_passes_the_same_checks():
    _, _, target = _problem()
    s = pt.DirectSampler(target)
    _z_check(s)
    _chi2_check(s)
    assert_properly_weighted(s, target.state_from([[1]]))


def test_constant_factor_in_weight_is_caught():
    _, _, target = _problem()
    with pytest.raises(AssertionError, match="standard errors"):
        _z_check(ConstantFactorDirect(target))
    with pytest.raises(AssertionError, match="not properly weighted"):
        assert_properly_weighted(ConstantFactorDirect(target), target.state_from([[]]))


def test_wrong_proposal_is_caught_per_token():
    _, _, target = _problem()
    with pytest.raises(AssertionError, match="not properly weighted"):
        assert_properly_weighted(TemperedDirect(target), target.state_from([[]]))


def _critic_problem():
    # LM proposal with a soft critic in (0, 1]: weights vary strongly, so resampling matters,
    # and every increment is <= 1, so the exact-draw bound log C = 0 holds.
    lm = random_ngram(np.random.default_rng(2), 3, order=2, smoothing=0.2)
    critic = random_ngram(
        np.random.default_rng(102), lm.vocab, 2, concentration=0.5, smoothing=0.05
    )
    return pt.DirectSampler(lm), critic


def _both_checks(sampler, critic, resampling, R=600, L=3):
    exact = enumerate_target(sampler.target * critic, L)
    runs = [
        smc(sampler, 4, L, rng=s, ess_threshold=1.0, resampling=resampling, critic=critic)
        for s in range(R)
    ]
    Z = np.exp(exact.log_z)
    assert_mean([np.exp(r.log_z) for r in runs], Z, sigmas=4.0, resolution=Z / R)
    draws = smc_exact_draws(runs, np.random.default_rng(1))
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def test_correct_resampling_passes():
    _both_checks(*_critic_problem(), "multinomial")


@pytest.mark.parametrize(
    "bug",
    [
        lambda rng, w, n: rng.choice(len(w), size=n, p=w**2 / (w**2).sum()),  # ∝ w²
        lambda rng, w, n: (rng.choice(len(w), size=n, p=w) + 1) % len(w),  # off by one
    ],
    ids=["squared-weights", "off-by-one"],
)
def test_biased_resampling_is_caught(bug):
    with pytest.raises(AssertionError, match="χ²|standard errors"):
        _both_checks(*_critic_problem(), bug)


def test_dropped_twist_correction_is_caught(monkeypatch):
    lm, _, target = _problem()
    # a strong twist (cubed), so that leaving it in the final weights is a visible bias
    twist = (
        random_ngram(np.random.default_rng(9), lm.vocab, 2, normalised=False, smoothing=0.3) ** 3
    )
    _z_check(pt.DirectSampler(target), twist=twist)  # correct engine passes
    monkeypatch.setattr(engine, "_cancel_twist", lambda inc, is_eos, tw: inc)
    with pytest.raises(AssertionError, match="standard errors"):
        _z_check(pt.DirectSampler(target), twist=twist)


def test_inconsistent_potential_breaks_the_laws():
    lm, _, _ = _problem()

    class OffByEOS(type(lm)):
        def _logw_next(self, context):
            out = super()._logw_next(context)
            out[-1] += 0.1  # bug: EOS weight disagrees with complete()
            return out

    bad = OffByEOS(lm.vocab, lm.table, lm.order)
    with pytest.raises(AssertionError, match="law 1"):
        assert_potential_laws(bad, [[], [0]])
