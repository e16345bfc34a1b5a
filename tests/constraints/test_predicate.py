"""predicate(fn): semantics per level against a reference, laws, lifting, errors."""

from __future__ import annotations

import codecs
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.constraints.predicate import PredicateError
from potentia.potentials.base import Vocabulary
from potentia.testing import assert_potential_laws

PIECES = [b"a", b"b", b"x", b" ", "é".encode(), b"\xc3", b"\xa9", "日".encode(), b"\xff"]
TOY = Vocabulary(
    [b"a", b"b", b"ab", b"x", b" ", "é".encode(), b"\xc3", b"\xa9", "日".encode()[:2],
     "日".encode()[2:], b"a b", b"\xff", b""]
)  # fmt: skip
byte_strings = st.lists(st.sampled_from(PIECES), max_size=6).map(b"".join)


def no_ab(s: str) -> bool:
    return "ab" not in s


def even(s: str) -> bool:
    return len(s) % 2 == 0


def soft_w(s: str) -> float:
    return -math.inf if "x" in s else -0.5 * len(s) + 0.25 * s.count("é")


FNS = {"no_ab": (no_ab, False), "even": (even, False), "soft": (soft_w, True)}


def partial(bs: bytes):
    d = codecs.getincrementaldecoder("utf-8")()
    try:
        text = d.decode(bs, final=False)
    except UnicodeDecodeError:
        return None
    # every tail these pieces leave (a lead byte alone) can still become a character
    return text


def reference(fn, soft, level, bs: bytes, final: bool) -> float:
    """The documented semantics, computed from scratch on the decoded text."""
    w = (lambda s: fn(s)) if soft else (lambda s: 0.0 if fn(s) else -math.inf)
    if final:
        try:
            text = bs.decode("utf-8")
        except UnicodeDecodeError:
            return -math.inf
    else:
        text = partial(bs)
        if text is None:
            return -math.inf
    if level == "complete":
        return w(text) if final else 0.0
    ws = [w(text[:k]) for k in range(len(text) + 1)]
    if -math.inf in ws:
        return -math.inf
    if final and level == "prefix":
        return 0.0
    return ws[-1]


@settings(max_examples=80, deadline=None)
@given(byte_strings, st.sampled_from(sorted(FNS)), st.sampled_from(["complete", "prefix", "both"]))
def test_semantics_match_reference(bs, name, level):
    fn, soft = FNS[name]
    pot = pt.predicate(fn, level=level, soft=soft)
    for i in range(len(bs) + 1):
        x = list(bs[:i])
        assert pot.prefix(x) == reference(fn, soft, level, bs[:i], False), (bs[:i], level)
        assert pot.complete(x) == reference(fn, soft, level, bs[:i], True), (bs[:i], level)


CTX = [list(c) for n in range(3) for c in itertools.product(range(len(TOY)), repeat=n)]
CTX = CTX[: len(TOY) + 1] + CTX[len(TOY) + 1 :: 5]


@pytest.mark.parametrize(
    "name,level", list(itertools.product(sorted(FNS), ["complete", "prefix", "both"]))
)
def test_laws_on_toy_vocabulary(name, level):
    fn, soft = FNS[name]
    pot = pt.predicate(fn, level=level, soft=soft)
    lifted = pot.lift(TOY)
    valid = [c for c in CTX if lifted.complete(c) > -np.inf][:15] if not soft else ()
    assert_potential_laws(lifted, CTX, valid=valid)
    assert_potential_laws(pot, [list(TOY.decode_bytes(c)) for c in CTX[:40]])


@pytest.mark.parametrize("level", ["complete", "prefix", "both"])
def test_single_token_checks_equal_vectors_and_bytes(level):
    pot = pt.predicate(soft_w, level=level, soft=True)
    lifted = pot.lift(TOY)
    rng = np.random.default_rng(3)
    V = len(TOY)
    for _ in range(5):
        ctxs = [list(rng.integers(0, V, size=3)) for _ in range(4)]
        ctxs = [c for c in ctxs if lifted.prefix(c) > -np.inf] or [[0, 1, 4]]
        state = lifted.state_from(ctxs)
        full = state.logw_next()
        rows = np.repeat(np.arange(len(ctxs)), V + 1)
        toks = np.tile(np.arange(V + 1), len(ctxs))
        np.testing.assert_array_equal(state.logw_tokens(rows, toks), full.ravel())
        for r, c in enumerate(ctxs):
            base = pot.prefix(list(TOY.decode_bytes(c)))
            for a in range(V):
                want = pot.prefix(list(TOY.decode_bytes(c + [a]))) - base
                assert full[r, a] == want or (full[r, a] == want == -np.inf)


def test_fn_sees_only_complete_characters():
    seen: list[str] = []

    def spy(s: str) -> bool:
        seen.append(s)
        return True

    lifted = pt.predicate(spy, level="prefix").lift(TOY)
    seen.clear()
    state = lifted.init_state(1).advance(np.array([6]))  # b"\xc3", half of "é"
    assert seen == []
    assert state.logw_tokens(np.array([0]), np.array([7])) == 0.0  # b"\xa9" completes it
    assert seen == ["é"]
    state.advance(np.array([7]))  # memoised: no second call
    assert seen == ["é"]
    seen.clear()
    lifted.init_state(1).advance(np.array([10]))  # b"a b": one call per character
    assert seen == ["a", "a ", "a b"]


def test_soft_levels_differ_as_documented():
    w = pt.predicate(soft_w, level="complete", soft=True)
    g = pt.predicate(soft_w, level="prefix", soft=True)
    b = pt.predicate(soft_w, level="both", soft=True)
    x = list(b"ab")
    assert (w.prefix(x), w.complete(x)) == (0.0, -1.0)
    assert (g.prefix(x), g.complete(x)) == (-1.0, 0.0)
    assert (b.prefix(x), b.complete(x)) == (-1.0, -1.0)
    assert g.complete(list(b"axb")) == -np.inf  # zeros stay zeros at every level


def test_errors_name_the_text():
    with pytest.raises(TypeError, match="`fn`"):
        pt.predicate("not a function")
    with pytest.raises(ValueError, match="`level`"):
        pt.predicate(no_ab, level="suffix")
    with pytest.raises(TypeError, match="`soft`"):
        pt.predicate(no_ab, soft=1)
    with pytest.raises(ValueError, match="empty text: string index out of range"):
        pt.predicate(lambda s: s[0] == "a")
    with pytest.raises(TypeError, match="returned 3"):
        pt.predicate(lambda s: 3)
    with pytest.raises(ValueError, match="language is empty"):
        pt.predicate(lambda s: len(s) > 2, level="prefix")
    boom = pt.predicate(lambda s: 1 / (len(s) - 2) > 0).lift(TOY)
    with pytest.raises(PredicateError, match="ZeroDivisionError.*on the text 'ab'"):
        boom.complete([2])
    nan = pt.predicate(lambda s: float("nan") if s else 0.0, soft=True, level="both")
    with pytest.raises(PredicateError, match="returned nan on the text 'a'"):
        nan.prefix([97])


def test_front_door_samples_satisfy_predicate():
    from potentia.models.toy import random_ngram

    lm = random_ngram(np.random.default_rng(1), TOY, 2, 1.0, 1.0, 0.0)
    c = pt.predicate(no_ab, level="prefix") & pt.predicate(lambda s: "é" in s)
    out = pt.sample(lm, None, c, particles=8, max_tokens=5, seed=2)
    assert out.posterior
    for s in out.posterior:
        text = s if isinstance(s, str) else TOY.decode(s)
        assert "ab" not in text and "é" in text


@pytest.mark.real_model
@pytest.mark.parametrize("which", ["gemma", "smollm"])
def test_prefix_predicate_equals_lipogram_on_real_vocabularies(which, request):
    # the same language two ways: Python on text vs a compiled automaton
    vocab = request.getfixturevalue(which).vocab
    V = len(vocab)
    pred = pt.predicate(lambda s: "e" not in s.lower(), level="prefix").lift(vocab)
    lipo = pt.excludes(letters="e", ignore_case=True).lift(vocab)
    rng = np.random.default_rng(11)
    ps, ls = pred.init_state(1), lipo.init_state(1)
    for step in range(4):
        want = ls.logw_next()[0]
        toks = np.concatenate([rng.choice(V, 300), [V]]).astype(np.int64)
        rows = np.zeros(len(toks), dtype=np.int64)
        np.testing.assert_array_equal(ps.logw_tokens(rows, toks), want[toks])
        if step == 0 or which == "smollm":  # a full Python vector costs ~0.7 s on Gemma
            np.testing.assert_array_equal(ps.logw_next()[0], want)
        a = np.array([rng.choice(np.flatnonzero(want[:V] == 0))])
        ps, ls = ps.advance(a), ls.advance(a)
