"""``|`` through composed operand states (issue 11, item 4): exact against brute force.

The reference is the definition, prefix(x) = max(left.prefix(x), right.prefix(x)) on
every prefix, evaluated context by context; the state path must agree on every context
and every next token, satisfy the potential laws, and need no loop over the vocabulary.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.models import FiniteLanguage
from potentia.potentials import Vocabulary
from potentia.potentials.ops import Or, OrState
from potentia.testing import assert_potential_laws
from potentia.testing.strategies import hard_constraints, vocabularies


def brute_logw_next(c: Or, ctx: list[int]) -> np.ndarray:
    """logw_next by the definition: max of the operands' prefixes, token by token."""
    V = len(c.vocab)
    pre = c.prefix(ctx)
    out = np.full(V + 1, -np.inf)
    if pre == -np.inf:
        return out
    for a in range(V):
        out[a] = c.prefix([*ctx, a]) - pre
    out[V] = c.complete(ctx) - pre
    return out


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_or_state_matches_brute_force_and_laws(data):
    vocab = data.draw(vocabularies(1, 3))
    L = data.draw(st.integers(1, 3))
    a = data.draw(hard_constraints(vocab, L))
    b = data.draw(hard_constraints(vocab, L))
    c = a | b
    V = len(vocab)
    ctxs = [list(x) for n in range(L + 1) for x in itertools.product(range(V), repeat=n)]
    for ctx in ctxs:
        s = c.init_state(1)
        for t in ctx:
            s = s.advance(np.array([t]))
        got = s.logw_next()[0]
        assert np.array_equal(got, brute_logw_next(c, ctx)), ctx
        assert np.array_equal(s.allowed()[0], got > -np.inf)
        toks = np.arange(V + 1)
        assert np.array_equal(s.logw_tokens(np.zeros(V + 1, dtype=np.int64), toks), got)
    valid = [x for x in ctxs if c.complete(x) == 0]
    assert_potential_laws(c, ctxs, valid=valid)


def test_or_state_batches_select_and_advance_like_single_rows():
    vocab = Vocabulary.from_strings(["a", "b", "c"])
    left = FiniteLanguage(vocab, [(0, 1), (0, 0, 2)])
    right = FiniteLanguage(vocab, [(0, 2), (1,), (2, 2, 2)])
    c = left | right
    s = c.init_state(3).advance(np.array([0, 1, 2]))
    s = s.select(np.array([2, 0, 0, 1]))  # repeats and reordering
    assert isinstance(s, OrState) and s.contexts == [[2], [0], [0], [1]]
    s2 = s.advance(np.array([2, 1, 0, 0]))  # the last one leaves both languages
    for r, ctx in enumerate(s2.contexts):
        assert np.array_equal(s2.logw_next()[r], brute_logw_next(c, ctx)), ctx
    assert not s2.allowed()[3].any()


def test_or_of_operands_with_differently_ordered_vocabularies():
    v1 = Vocabulary.from_strings(["a", "b", "c"])
    v2 = Vocabulary.from_strings(["c", "a", "b"])
    left = FiniteLanguage(v1, [(0, 1)])  # "ab"
    right = FiniteLanguage(v2, [(0, 0)])  # "cc"
    c = left | right
    for ctx in ([], [0], [2], [2, 2], [0, 1], [1]):
        s = c.init_state(1)
        for t in ctx:
            s = s.advance(np.array([t]))
        assert np.array_equal(s.logw_next()[0], brute_logw_next(c, ctx)), ctx
    assert c.complete([2, 2]) == 0 and c.complete([0, 1]) == 0 and c.complete([0, 0]) == -np.inf


def test_lifted_regex_union_agrees_with_the_single_regex():
    """On a real tokenizer: (A | B) lifted has the same masks as the regex A|B lifted."""
    letters = sorted(set(b" .ParisLyonRomeMilanx"))
    vocab = Vocabulary([bytes([b]) for b in letters] + [b" Pa", b"ris", b"on."])
    u = (pt.regex(r" (Paris|Lyon)\.") | pt.regex(r" (Rome|Milan)\.")).lift(vocab)
    one = pt.regex(r" (Paris|Lyon|Rome|Milan)\.").lift(vocab)
    for text in [b"", b" ", b" Pa", b" Paris", b" Ro", b" Milan", b" Lyon.", b" Rx"]:
        ctx = [vocab.tokens.index(bytes([b])) for b in text]
        su, so = u.init_state(1), one.init_state(1)
        for t in ctx:
            assert np.array_equal(su.allowed(), so.allowed()), text
            assert su.logw_tokens([0], [t])[0] == so.logw_tokens([0], [t])[0]
            if not so.allowed()[0, t]:
                break
            su, so = su.advance(np.array([t])), so.advance(np.array([t]))
        else:
            assert np.array_equal(su.allowed(), so.allowed()), text


@pytest.mark.real_model
def test_union_on_gemma_equals_the_single_regex_and_is_fast(gemma):
    """Reproduction 3 of issue 11: the union's masks on the 262k vocabulary, in seconds."""
    import time

    t0 = time.perf_counter()
    u = (pt.regex(r" (Paris|Lyon)\.") | pt.regex(r" (Rome|Milan)\.")).lift(gemma.vocab)
    one = pt.regex(r" (Paris|Lyon|Rome|Milan)\.").lift(gemma.vocab)
    su, so = u.init_state(1), one.init_state(1)
    for t in gemma.encode(" Milan."):
        assert np.array_equal(su.allowed(), so.allowed())
        su, so = su.advance(np.array([t])), so.advance(np.array([t]))
    assert np.array_equal(su.allowed(), so.allowed()) and su.allowed()[0, -1]
    assert time.perf_counter() - t0 < 20  # the vocabulary loop it replaces took ~110 s
