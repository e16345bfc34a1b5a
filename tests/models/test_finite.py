"""Exact targets for finite languages: every tokenization of every string, scored exactly.

All checks are exact (no statistical tests here).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from potentia.constraints.cfg import cfg
from potentia.models.exact import enumerate_target
from potentia.models.finite import exact_finite_target, language_strings, tokenizations
from potentia.models.toy import FiniteLanguage, random_ngram
from potentia.potentials.base import Vocabulary

GRAMMARS = Path("/work/shared/data/grammars/gad-examples")

VOCAB = Vocabulary(
    [b"0", b"1", b"01", b"10", b"0", b"", b"101", b"x"], ids=[10, 11, 12, 13, 14, 15, 16, 17]
)


def brute_tokenizations(s: bytes, vocab: Vocabulary) -> list[tuple[int, ...]]:
    nonempty = [i for i, t in enumerate(vocab.tokens) if t]
    out = []
    for n in range(len(s) + 1):
        for seq in itertools.product(nonempty, repeat=n):
            if vocab.decode_bytes(seq) == s:
                out.append(seq)
    return sorted(out)


@pytest.mark.parametrize("s", [b"", b"0", b"0101", b"1010", b"10110", b"x0", b"2"])
def test_tokenizations_match_brute_force(s):
    assert tokenizations(s, VOCAB) == brute_tokenizations(s, VOCAB)


def test_exact_target_matches_enumeration_of_the_lifted_language():
    lm = random_ngram(np.random.default_rng(0), VOCAB, order=2)
    strings = [b"0101", b"10", b"", b"1011", b"x"]
    bytes_lang = FiniteLanguage(Vocabulary.bytes256(), [list(s) for s in strings])
    ft = exact_finite_target(lm, bytes_lang)
    # independent route: enumerate every token string under LM × (language lifted to tokens);
    # the empty token (position 5) spells nothing, so leave it out of both
    no_empty = FiniteLanguage(VOCAB, [x for s in strings for x in brute_tokenizations(s, VOCAB)])
    ref = enumerate_target(lm * no_empty, max_len=4)
    assert set(ft.log_weights) == set(ref.log_weights)
    for x, lw in ref.log_weights.items():
        assert np.isclose(ft.log_weights[x], lw, rtol=1e-12)
    assert np.isclose(ft.log_z, ref.log_z, rtol=1e-12)
    sp = ft.string_posterior()
    assert set(sp) == set(strings) and np.isclose(sum(sp.values()), 1.0)
    want = ref.text_posterior(VOCAB)
    for s, p in sp.items():
        assert np.isclose(p, want[s.decode()], rtol=1e-9)
    # one LM call per distinct token prefix, no more
    prefixes = {x[:i] for x in ft.log_weights for i in range(len(x) + 1)}
    assert ft.lm_calls == len(prefixes)
    # the explicit-list form gives the same target
    assert exact_finite_target(lm, [s.decode() for s in strings]).log_weights == ft.log_weights


@pytest.mark.skipif(not GRAMMARS.exists(), reason="the shared GAD grammars are not present")
def test_grammar_strings_gad_binary_len_5():
    for name in ("binary_len_5_0", "binary_len_5_1"):
        c = cfg((GRAMMARS / f"{name}.ebnf").read_text())
        strings = language_strings(c)
        assert len(strings) == 17 and all(len(s) == 5 and set(s) <= set(b"01") for s in strings)
    assert b"10111" in language_strings(cfg((GRAMMARS / "binary_len_5_0.ebnf").read_text()))


def test_infinite_language_is_refused_with_a_length_bound_suggested():
    c = cfg('root ::= "a" root | "b"')
    with pytest.raises(ValueError, match="max_bytes"):
        language_strings(c)
    assert language_strings(c, max_bytes=4) == [b"aaab", b"aab", b"ab", b"b"]
    lm = random_ngram(np.random.default_rng(1), Vocabulary.from_strings(["a", "b", "ab"]))
    with pytest.raises(ValueError, match="infinite"):
        exact_finite_target(lm, c)
    ft = exact_finite_target(lm, c, max_bytes=3)
    assert set(ft.string_posterior()) == {b"b", b"ab", b"aab"}


def test_bad_input():
    lm = random_ngram(np.random.default_rng(2), Vocabulary.from_strings(["a", "b"]))
    with pytest.raises(ValueError, match="empty under the LM's vocabulary"):
        exact_finite_target(lm, ["c", "ac"])
    with pytest.raises(TypeError, match="list of strings"):
        language_strings("root ::= 'a'")
    with pytest.raises(TypeError, match="over bytes"):
        language_strings(FiniteLanguage(lm.vocab, [(0,)]))
    with pytest.raises(ValueError, match="max_bytes"):
        language_strings(["a"], max_bytes=-1)
