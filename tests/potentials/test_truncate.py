"""Truncate: top-k / top-p as a declared target change (issue 11, item 7).

The truncated LM's string probabilities are checked against a direct computation from
the LM's rows (sort, cut, renormalise by hand), the laws hold, and SMC samples
``Truncate(lm) × constraint`` exactly (χ² on exact draws).
"""

import itertools

import numpy as np
import pytest

import potentia as pt
from potentia.models import FiniteLanguage, enumerate_target, random_ngram
from potentia.potentials.ops import Truncate
from potentia.smc import smc
from potentia.testing import assert_gof, smc_exact_draws
from potentia.testing.laws import assert_potential_laws


def _by_hand(row, k=None, p=None):
    probs = np.exp(row)
    order = sorted(range(len(row)), key=lambda i: (-probs[i], i))
    kept, mass = [], 0.0
    for rank, i in enumerate(order):
        if probs[i] == 0 or (k is not None and rank >= k) or (p is not None and mass >= p - 1e-12):
            break
        kept.append(i)
        mass += probs[i]
    z = sum(probs[i] for i in kept)
    return {i: probs[i] / z for i in kept}


@pytest.mark.parametrize("k,p", [(1, None), (2, None), (None, 0.5), (None, 0.9), (3, 0.7)])
def test_rows_and_strings_match_a_hand_computation(k, p):
    lm = random_ngram(np.random.default_rng(5), 4, order=2, smoothing=0.2)
    t = Truncate(lm, top_k=k, top_p=p)
    for ctx in ([], [0], [1, 2], [3, 3, 1]):
        got = np.exp(t.logw_next(ctx))
        if t.prefix(ctx) == -np.inf:  # a token of ctx was cut: nothing follows
            assert not got.any()
            continue
        want = _by_hand(lm.logw_next(ctx), k, p)
        assert set(np.flatnonzero(got > 0)) == set(want)
        for i, q in want.items():
            assert np.isclose(got[i], q)
    for x in ([0, 1], [2], [3, 0, 2]):  # a string's probability is the product of cut rows
        manual = 1.0
        for j in range(len(x) + 1):
            row = _by_hand(lm.logw_next(x[:j]), k, p)
            manual *= row.get(x[j] if j < len(x) else len(lm.vocab), 0.0)
        assert np.isclose(np.exp(t.complete(x)), manual)
    ctxs = [list(c) for n in range(3) for c in itertools.product(range(4), repeat=n)]
    assert_potential_laws(t, ctxs)


def test_smc_samples_the_truncated_target():
    lm = random_ngram(np.random.default_rng(11), 3, order=2, smoothing=0.5)
    lang = FiniteLanguage(lm.vocab, [[0], [1], [0, 1], [2, 2], [1, 0, 2]])
    target = Truncate(lm, top_k=3, top_p=0.9) * lang  # keeps 4 of the 5 strings
    exact = enumerate_target(target, 4)
    assert len(exact.posterior) == 4 < len(enumerate_target(lm * lang, 4).posterior)
    runs = (smc(pt.DirectSampler(target), 4, 4, rng=s) for s in range(600))
    draws = smc_exact_draws(runs, np.random.default_rng(2), log_bound=0.0)
    assert len(draws) > 100
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def test_bad_arguments():
    lm = random_ngram(np.random.default_rng(0), 3)
    for kw in ({"top_k": 0}, {"top_k": 1.5}, {"top_k": True}, {"top_p": 0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match="top_"):
            Truncate(lm, **kw)
