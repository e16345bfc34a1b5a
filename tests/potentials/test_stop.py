"""Stop strings (issue 11, item 7): ``StopAt(lm, stop)`` and ``pt.sample(..., stop=...)``.

Declared target: for a token string ``x`` (EOS not included),
``P_LM(x…)`` if a stop string first occurs (in x's bytes, across token boundaries) in x's
last token, ``P_LM(x·EOS)`` if x holds no stop string, and 0 otherwise. It is checked
against a formula computed straight from the LM's conditionals (not through StopAt), the
potential laws on the wrapper, and SMC / CARS through ``pt.sample`` by χ² on exact draws
(false-alarm budget 1e-4 per test). A planted bug (occurrences across token boundaries
missed) is shown to fail the formula check and the χ² test.
"""

import itertools

import numpy as np
import pytest

import potentia as pt
from potentia.models import FiniteLanguage, ToyLM, enumerate_target, random_ngram
from potentia.potentials.base import Vocabulary
from potentia.potentials.ops import StopAt, cut_at_stop
from potentia.testing import assert_gof, smc_exact_draws
from potentia.testing.laws import assert_potential_laws

# tokens: "a", "b", "ab", "\n"; stop strings: "ab" (inside one token or across two)
# and "\n\n" (only across tokens)
VOCAB = Vocabulary([b"a", b"b", b"ab", b"\n"])
STOPS = ["ab", "\n\n"]
L = 3


def _lm(seed=0):
    return random_ngram(np.random.default_rng(seed), VOCAB, order=2, smoothing=0.3)


def _want(lm, max_len, stops=(b"ab", b"\n\n"), across=True):
    """The declared target from the LM's conditionals, for every x with len(x) <= max_len."""
    out = {}
    for n in range(max_len + 1):
        for x in itertools.product(range(len(VOCAB)), repeat=n):
            first = None
            for k in range(1, n + 1):
                pieces = [VOCAB.tokens[t] for t in x[:k]]
                data = b"".join(pieces) if across else pieces[-1]
                if any(s in data for s in stops) or (
                    not across and any(any(s in p for s in stops) for p in pieces)
                ):
                    first = k
                    break
            if first is None:
                out[x] = lm.complete(list(x))
            elif first == n:
                out[x] = lm.prefix(list(x))
    return {x: w for x, w in out.items() if w > -np.inf}


class _NoAcross(StopAt):
    """Planted bug: a stop string is only seen inside one token, never across two."""

    def hit(self, data):
        return False

    def _first_stop(self, context):
        for k, t in enumerate(context):
            if any(s in self.vocab.tokens[t] for s in self.stops):
                return k + 1
        return None

    def init_state(self, n):
        return super(StopAt, self).init_state(n)  # the slow generic state


def test_target_matches_the_formula():
    lm = _lm()
    exact = enumerate_target(StopAt(lm, STOPS), L)
    want = _want(lm, L)
    assert set(exact.log_weights) == set(want)
    for x, lw in want.items():
        assert np.isclose(exact.log_weights[x], lw), x
    assert (1, 3, 3) in want  # stop "\n\n" first occurs in token 3: "b\n\n" ends there
    assert (3, 3, 0) not in want  # ... and nothing may follow it
    assert (3, 3) in want and (0, 1) in want and (2,) in want
    assert (2, 0) not in want  # after "ab" nothing may follow


def test_planted_bug_fails_the_formula():
    lm = _lm()
    bad = enumerate_target(_NoAcross(lm, STOPS), L)
    want = _want(lm, L)
    assert set(bad.log_weights) != set(want)


def test_laws():
    lm = _lm(1)
    w = StopAt(lm, STOPS)
    ctxs = [list(c) for n in range(4) for c in itertools.product(range(len(VOCAB)), repeat=n)]
    assert_potential_laws(w, ctxs)
    lang = FiniteLanguage(VOCAB, [[0, 1], [2], [3, 3], [0, 0, 1]])
    assert_potential_laws(w * lang, ctxs, valid=[[0, 1], [2], [3, 3], [0, 0, 1]])


def _smc_draws(model, n_runs, seed, stop_cls=None):
    runs = (
        pt.sample(model, None, None, particles=4, max_tokens=L, seed=s, stop=STOPS)
        for s in range(seed, seed + n_runs)
    )
    return smc_exact_draws(runs, np.random.default_rng(seed), log_bound=0.0)


def test_smc_samples_the_stop_target():
    lm = _lm(2)
    exact = enumerate_target(StopAt(lm, STOPS), L)
    draws = _smc_draws(ToyLM(lm), 1200, 0)
    assert len(draws) > 600
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def test_planted_bug_fails_chi2():
    """χ² of the correct sampler against the buggy target's posterior must reject."""
    lm = _lm(2)
    bad = enumerate_target(_NoAcross(lm, STOPS), L)
    draws = _smc_draws(ToyLM(lm), 1200, 0)
    with pytest.raises(AssertionError):
        assert_gof(draws, bad.posterior, false_alarm=1e-4)


def test_cars_with_a_constraint_samples_the_stop_target():
    lm = _lm(3)
    strings = [[0, 1], [2], [3, 3], [0, 0, 1], [1, 3, 3], [1], [0]]
    lang = FiniteLanguage(VOCAB, strings)
    exact = enumerate_target(StopAt(lm, STOPS) * lang, L)
    out = pt.sample(ToyLM(lm), None, lang, method="cars", particles=3000, max_tokens=L, stop=STOPS)
    assert_gof([tuple(c) for c in out.contexts], exact.posterior, false_alarm=1e-4)
    assert out.extra["stop"] == STOPS


def test_texts_are_cut_after_the_first_stop_string():
    assert cut_at_stop("xab\n\nyy", (b"ab", b"\n\n")) == "xab"
    assert cut_at_stop("x\n\nab", (b"ab", b"\n\n")) == "x\n\n"
    assert cut_at_stop("none", (b"ab",)) == "none"
    lm = _lm(4)
    out = pt.sample(ToyLM(lm), None, None, particles=32, max_tokens=4, stop="ab")
    for ctx, text, st in zip(out.contexts, out.texts, out.status):
        full = VOCAB.decode(ctx)
        assert text == cut_at_stop(full, (b"ab",))
        if st == "finished" and "ab" in full:
            assert text.endswith("ab") and text.count("ab") == 1


def test_every_method_takes_stop():
    lm = _lm(5)
    lang = FiniteLanguage(VOCAB, [[0, 1], [2], [3, 3]])
    for method in ("asap", "cars", "lcd", "astar", "beam", "bon"):
        out = pt.sample(ToyLM(lm), None, lang, method=method, particles=2, max_tokens=3, stop="ab")
        assert all(t in ("ab", "\n\n") for t, s in zip(out.texts, out.status) if s == "finished")
