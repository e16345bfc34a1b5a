"""The potential contract, composition and alignment, on toy potentials."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.models import DFA, FiniteLanguage, NGramLM, TablePotential, random_ngram
from potentia.potentials import Power, Product, Vocabulary
from potentia.testing import assert_potential_laws
from potentia.testing.strategies import (
    hard_constraints,
    soft_potentials,
    toy_lms,
    vocabularies,
)

SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _contexts(V, max_len=3):
    out = [[]]
    for L in range(1, max_len + 1):
        out += [list(np.unravel_index(i, (V,) * L)) for i in range(V**L)]
    return [[int(t) for t in c] for c in out]


@SETTINGS
@given(data=st.data(), vocab=vocabularies(1, 3))
def test_laws_of_toy_potentials_and_products(data, vocab):
    lm = data.draw(toy_lms(vocab))
    hard = data.draw(hard_constraints(vocab))
    soft = data.draw(soft_potentials(vocab))
    ctxs = _contexts(len(vocab), 2)
    valid = [list(s) for s in getattr(hard, "strings", [])]
    for pot in [lm, hard, soft, lm * hard, lm * soft * hard, hard & hard, lm * soft**0.5]:
        assert_potential_laws(pot, ctxs, valid=valid if pot.hard else ())


@SETTINGS
@given(data=st.data(), vocab=vocabularies(1, 3))
def test_boolean_algebra_matches_sets(data, vocab):
    a = data.draw(hard_constraints(vocab, 2))
    b = data.draw(hard_constraints(vocab, 2))
    ctxs = _contexts(len(vocab), 3)
    for c in ctxs:
        ia, ib = a.complete(c) == 0, b.complete(c) == 0
        assert ((a & b).complete(c) == 0) == (ia and ib)
        assert ((a | b).complete(c) == 0) == (ia or ib)
        assert ((~a).complete(c) == 0) == (not ia)
    for pot in [a & b, a | b, ~a]:
        assert_potential_laws(pot, ctxs[:13])


def test_or_prefix_is_exact():
    v = Vocabulary([b"a", b"b"])
    a = FiniteLanguage(v, [(0, 0)])
    b = FiniteLanguage(v, [(1,)])
    u = a | b
    assert u.prefix([0]) == 0 and u.prefix([1]) == 0 and u.prefix([0, 1]) == -np.inf


def test_product_aligns_permuted_vocabularies():
    v1 = Vocabulary([b"a", b"b", b"c"])
    v2 = Vocabulary([b"c", b"a", b"b"])
    lm = random_ngram(np.random.default_rng(0), v1, 2)
    # constraint over v2 that only allows "b" tokens
    dfa = DFA(v2, np.array([[-1, -1, 0]]), [0])
    prod = lm * dfa
    assert prod.vocab == v1
    vec = prod.logw_next([1])
    assert vec[0] == -np.inf and vec[2] == -np.inf and vec[1] > -np.inf
    assert_potential_laws(prod, [[], [1], [1, 1], [0]])


def test_unalignable_product_explains_lifting():
    lm = random_ngram(np.random.default_rng(0), 3, 2)
    other = random_ngram(np.random.default_rng(0), Vocabulary([b"x", b"y", b"z"]), 2)
    with pytest.raises(ValueError, match="lift"):
        lm * other


def test_lifted_byte_potential():
    bytes_lang = FiniteLanguage(Vocabulary.bytes256(), [tuple(b"ab"), tuple(b"abc")])
    tokens = Vocabulary([b"a", b"b", b"ab", b"c", b"bc"])
    lifted = bytes_lang.lift(tokens)
    assert lifted.complete([2]) == 0 and lifted.complete([0, 1]) == 0
    assert lifted.complete([0, 4]) == 0 and lifted.complete([3]) == -np.inf
    assert_potential_laws(lifted, [[], [0], [2], [0, 1], [3]], valid=[[2, 3], [0, 4]])


def test_soft_only_operators_refuse_soft():
    lm = random_ngram(np.random.default_rng(0), 2, 2)
    hard = FiniteLanguage(lm.vocab, [(0,)])
    for op in (lambda: lm & hard, lambda: lm | hard, lambda: ~lm):
        with pytest.raises(TypeError, match="soft"):
            op()
    with pytest.raises(ValueError, match="power"):
        Power(lm, 0)
    with pytest.raises(TypeError, match="Potential"):
        Product(lm, "not a potential")


def test_context_validation_and_bad_outputs():
    lm = random_ngram(np.random.default_rng(0), 2, 2)
    with pytest.raises(ValueError, match="EOS"):
        lm.prefix([0, 2])
    with pytest.raises(ValueError, match="not a token index"):
        lm.logw_next([5])
    with pytest.raises(ValueError, match="not a token index"):
        lm.complete(["a"])

    class Inf(TablePotential):
        def _complete(self, context):
            return float("inf")

    bad = Inf(lm.vocab, lm.table, 2)
    with pytest.raises(ValueError, match=r"\+inf"):
        bad.complete([])
    with pytest.raises(ValueError, match="sums to"):
        NGramLM(lm.vocab, {(-1,): np.zeros(3), (0,): np.zeros(3), (1,): np.zeros(3)})


def test_vocabulary_errors_and_decoding():
    with pytest.raises(TypeError, match="bytes"):
        Vocabulary(["a"])
    with pytest.raises(ValueError, match="empty"):
        Vocabulary([])
    with pytest.raises(ValueError, match="ids"):
        Vocabulary([b"a"], ids=[1, 2])
    v = Vocabulary([b"\xc3", b"\xa9", b"x"])
    assert v.decode([0, 1, 2]) == "éx"
    assert v.decode([0]) == "\\xc3"
    assert v.eos == 3 and not Vocabulary([b"a", b"a"]).has_unique_bytes


def test_inputs_not_mutated():
    lm = random_ngram(np.random.default_rng(0), 2, 2)
    ctx = [0, 1]
    lm.logw_next(ctx)
    st_ = lm.state_from([ctx])
    st_.advance(np.array([0]))
    st_.select(np.array([0, 0]))
    assert ctx == [0, 1] and st_.contexts == [[0, 1]]


def test_top_level_exports():
    assert callable(pt.sample) and pt.Potential and pt.Vocabulary


def test_composites_lift_factor_by_factor():
    from potentia.potentials.ops import Lifted

    b = Vocabulary.bytes256()
    x = FiniteLanguage(b, [tuple(b"ab"), tuple(b"ba")])
    y = FiniteLanguage(b, [tuple(b"ab")])
    tokens = Vocabulary([b"a", b"b", b"ab"])
    for comp in [x & y, x | y, ~y, x * y]:
        lifted = comp.lift(tokens)
        assert not isinstance(lifted, Lifted)  # each operand lifted, not the composite
        for ctx in [[2], [0, 1], [1, 0], [0]]:
            assert lifted.complete(ctx) == comp.complete(list(tokens.decode_bytes(ctx)))
