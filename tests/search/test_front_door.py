"""pt.sample(..., method="astar" | "beam" | "deal" | "bon") reaches potentia.search."""

import numpy as np
import pytest

import potentia as pt
from potentia.models import FiniteLanguage, ToyLM, enumerate_target, random_ngram


def _problem():
    lm = random_ngram(np.random.default_rng(5), 3, smoothing=0.2)
    lang = FiniteLanguage(lm.vocab, [[0, 1], [1, 2, 0], [2], [2, 2, 1], [0]])
    return ToyLM(lm), lm, lang


@pytest.mark.parametrize("method", ["astar", "beam", "deal", "bon"])
def test_methods_run_and_respect_budgets(method):
    model, lm, lang = _problem()
    ex = enumerate_target(lm * lang, 3)
    res = pt.sample(
        model, [], lang, method=method, particles=8, max_tokens=3, seed=0, max_lm_calls=10_000
    )
    assert res.contexts and all(tuple(c) in ex.log_weights for c in res.contexts)
    if method in ("astar", "beam"):  # exact with 8 ≥ all strings / full width here
        assert res.extra["logp"][0] == pytest.approx(max(ex.log_weights.values()))
    cut = pt.sample(model, [], lang, method=method, particles=8, max_tokens=3, max_lm_calls=5)
    assert cut.extra["spent"]["lm_tokens"] <= 5


def test_front_door_errors():
    model, lm, lang = _problem()
    with pytest.raises(ValueError, match="particles"):
        pt.sample(model, [], lang, method="astar", particles=0)
    with pytest.raises(ValueError, match="method"):
        pt.sample(model, [], lang, method="a-star")
    with pytest.raises(ValueError, match="max_lm_calls|lm_tokens"):
        pt.sample(model, [], lang, method="beam", max_lm_calls=0)


# ----- search with a soft constraint or none ----------------------------------------------
def _soft(vocab, seed=3):
    rng = np.random.default_rng(seed)
    return random_ngram(rng, vocab, 2, 1.0, 1.0, 0.0, normalised=False, smoothing=0.3)


def test_search_without_a_constraint_is_exact():
    model, lm, _ = _problem()
    ex = enumerate_target(lm, 3)
    res = pt.sample(model, [], None, method="astar", particles=3, max_tokens=3, max_lm_calls=10**5)
    best = sorted(ex.log_weights.values(), reverse=True)[:3]
    assert res.extra["logp"] == pytest.approx(best)


@pytest.mark.parametrize("method", ["astar", "beam", "deal", "bon"])
def test_search_with_a_soft_constraint(method):
    model, lm, _ = _problem()
    soft = _soft(lm.vocab)
    assert not soft.hard
    ex = enumerate_target(lm * soft, 3)
    res = pt.sample(
        model, [], soft, method=method, particles=64, max_tokens=3, seed=0, max_lm_calls=10**5
    )
    assert res.contexts and all(tuple(c) in ex.log_weights for c in res.contexts)
    for c, lp in zip(res.contexts, res.extra["logp"]):  # the target is LM × soft
        assert lp == pytest.approx(ex.log_weights[tuple(c)])
    if method == "beam":  # width 64 ≥ every prefix: beam search is brute force here
        ranked = sorted(ex.log_weights.values(), reverse=True)
        assert res.extra["logp"] == pytest.approx(ranked)


# ----- pt.sample(..., unit=...): SMC resampling at unit boundaries ------------------------
@pytest.mark.parametrize("unit", [2, "b", "ab"])
def test_unit_reaches_unit_smc(unit):
    from potentia.search import unit_smc

    model, lm, lang = _problem()
    front = pt.sample(
        model, [], lang, unit=unit, sampler="direct", particles=8, max_tokens=3, seed=4
    )
    direct = unit_smc(pt.DirectSampler(lm * lang), unit, 8, 3, rng=4)
    assert front.method == direct.method and "unit_smc" in front.method
    assert front.contexts == direct.contexts
    np.testing.assert_allclose(front.log_weights, direct.log_weights)
    assert front.log_z == pytest.approx(direct.log_z)


def test_unit_every_k_resamples_only_at_boundaries_and_is_unbiased():
    from potentia.testing import assert_mean

    model, lm, lang = _problem()
    soft = _soft(lm.vocab, seed=8)
    exact = enumerate_target(lm * lang * soft, 3)
    zs, steps = [], set()
    for s in range(200):
        r = pt.sample(
            model, [], lang, critic=soft, unit=2, particles=4, max_tokens=3, seed=s,
            ess_threshold=1.0,
        )  # fmt: skip
        zs.append(np.exp(r.log_z))
        steps.update(r.resampled_at)
    assert steps and all(t % 2 == 0 for t in steps), steps  # every 2 tokens, never between
    # mean of 200 Ẑ within 4 standard errors (two-sided 6.3e-5 false-alarm rate)
    Z = np.exp(exact.log_z)
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / 200)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(unit=0), ValueError, "`unit`"),
        (dict(unit=""), ValueError, "`unit`"),
        (dict(unit=2.5), TypeError, "`unit`.*delimiter"),
        (dict(unit="\n", method="astar"), ValueError, "`unit` is for method='smc'"),
        (dict(unit=2, method="cars"), ValueError, "`unit` is for method='smc'"),
        (dict(critic="placeholder", method="beam"), ValueError, "`critic` and `twist`"),
    ],
)
def test_unit_and_critic_errors(kwargs, exc, match):
    model, lm, lang = _problem()
    if kwargs.get("critic") == "placeholder":
        kwargs["critic"] = _soft(lm.vocab)
    with pytest.raises(exc, match=match):
        pt.sample(model, [], lang, max_tokens=3, **kwargs)
