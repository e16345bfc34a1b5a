"""AutoStop: the LM stops by itself where the constraint is maximal (issue 11, item 1).

The target ``AutoStop(lm, c) × c`` is checked against a formula computed straight from the
LM's conditionals (not through AutoStop), SMC with direct and AWRS samplers against it by
χ² on exact draws, and the potential laws on the wrapper.
"""

import itertools

import numpy as np
import pytest

import potentia as pt
from potentia.models import FiniteLanguage, enumerate_target, random_ngram
from potentia.potentials.ops import AutoStop
from potentia.samplers.awrs import AWRS
from potentia.smc import smc
from potentia.testing import assert_gof, smc_exact_draws
from potentia.testing.laws import assert_potential_laws

# a, b, c: "ab" extends to "abc", so it is not maximal; "abc", "b" and "cc" are
STRINGS = [[0, 1], [0, 1, 2], [1], [2, 2], [0]]
MAXIMAL = {(0, 1, 2), (1,), (2, 2)}


def _lm(seed=0):
    return random_ngram(np.random.default_rng(seed), 3, order=2, smoothing=0.3)


def _want(lm, strings, maximal):
    """target(x) from the LM's conditionals: P(x…) if x is maximal, else P(x·EOS)."""
    out = {}
    for x in strings:
        lw = lm.prefix(x) if tuple(x) in maximal else lm.complete(x)
        out[tuple(x)] = lw
    return out


def test_target_is_the_lm_prefix_at_maximal_strings():
    lm = _lm()
    lang = FiniteLanguage(lm.vocab, STRINGS)
    target = AutoStop(lm, lang) * lang
    exact = enumerate_target(target, 4)
    want = _want(lm, STRINGS, MAXIMAL)
    assert set(exact.log_weights) == set(want)
    for x, lw in want.items():
        assert np.isclose(exact.log_weights[x], lw), x
    plain = enumerate_target(lm * lang, 4)  # without AutoStop: the LM's EOS factor applies
    assert plain.log_weights[(1,)] < exact.log_weights[(1,)]


def test_laws():
    lm = _lm(1)
    lang = FiniteLanguage(lm.vocab, STRINGS)
    w = AutoStop(lm, lang)
    ctxs = [list(c) for n in range(4) for c in itertools.product(range(3), repeat=n)]
    assert_potential_laws(w, ctxs)
    assert_potential_laws(w * lang, ctxs, valid=STRINGS)


@pytest.mark.parametrize("sampler", ["direct", "awrs"])
def test_smc_samples_the_autostop_target(sampler):
    lm = _lm(2)
    lang = FiniteLanguage(lm.vocab, STRINGS)
    w = AutoStop(lm, lang)
    exact = enumerate_target(w * lang, 4)
    s = pt.DirectSampler(w * lang) if sampler == "direct" else AWRS(w, lang)
    runs = (smc(s, 4, 4, rng=seed, ess_threshold=0.5) for seed in range(800))
    draws = smc_exact_draws(runs, np.random.default_rng(1), log_bound=0.0)
    assert len(draws) > 150
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def test_bad_arguments():
    lm = _lm()
    with pytest.raises(TypeError, match="hard constraint"):
        AutoStop(lm, lm)
    other = pt.regex("a+")
    with pytest.raises(ValueError, match="lift it first"):
        AutoStop(lm, other)


def test_llg_maximal_matches_the_mask():
    c = pt.json({"type": "object", "properties": {"a": {"type": "integer"}}}, whitespace="none")
    state = c.init_state(1)
    for b in b'{"a":12}':
        a = state.allowed()[0]
        assert state.maximal()[0] == (not a[:-1].any())
        state = state.advance(np.array([b]))
    assert state.maximal()[0] and not state.allowed()[0][:-1].any()
