"""potentia.regex: Python full-match semantics, exact prefixes, lifting to token vocabularies."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.potentials import Vocabulary
from potentia.testing.laws import assert_potential_laws

SETTINGS = settings(
    max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
PATTERNS = [
    r"[A-Z][a-z]+ \d{2}",
    r"(ab|c)*d?",
    r"(?i)k[aeiou]{1,2}",
    r"\w+@\w+\.(com|org)",
    r"[^a-c]?x+",
    r"é+ü?",
    r"\s*-?(0|[1-9][0-9]*)(\.[0-9]+)?\s*",
]


def b(s: str) -> list[int]:
    return list(s.encode("utf-8"))


def viable_by_enumeration(pattern: str, alphabet: str, n: int) -> dict[str, bool]:
    """Every string of length <= n over `alphabet`: is it a prefix of a match of length <= 2n."""
    lang = {
        "".join(w)
        for k in range(2 * n + 1)
        for w in itertools.product(alphabet, repeat=k)
        if re.fullmatch(pattern, "".join(w))
    }
    prefixes = {w[:i] for w in lang for i in range(len(w) + 1)}
    return {
        "".join(w): "".join(w) in prefixes
        for k in range(n + 1)
        for w in itertools.product(alphabet, repeat=k)
    }


@pytest.mark.parametrize(
    "pattern,alphabet",
    [(r"(ab|c)*d?", "abcd"), (r"a{2,3}b?|ba", "ab"), (r"(a|bb)c", "abc"), (r"[^a]b*", "abx")],
)
def test_prefix_and_complete_are_exact_by_enumeration(pattern, alphabet):
    # Completions of length <= n witness every viable prefix of length <= n for these patterns.
    c = pt.regex(pattern)
    for w, viable in viable_by_enumeration(pattern, alphabet, 4).items():
        assert (c.prefix(b(w)) == 0.0) == viable, (pattern, w)
        assert (c.complete(b(w)) == 0.0) == bool(re.fullmatch(pattern, w)), (pattern, w)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_strings_in_the_language_have_viable_prefixes(pattern):
    c = pt.regex(pattern)

    @SETTINGS
    @given(st.from_regex(pattern, fullmatch=True))
    def check(s):
        data = b(s)
        state = c.init_state(1)
        for x in data:
            assert state.logw_tokens(np.array([0]), np.array([x]))[0] == 0.0, (s, x)
            state = state.advance(np.array([x]))
        assert state.prefix()[0] == 0.0
        assert state.complete()[0] == 0.0 and c.complete(data) == 0.0

    check()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_strings_agree_with_fullmatch(pattern):
    c = pt.regex(pattern)

    @SETTINGS
    @given(st.text(alphabet="abcdeKxz019 .@-éü\n", max_size=8))
    def check(s):
        assert (c.complete(b(s)) == 0.0) == bool(re.fullmatch(pattern, s)), s
        # soundness: a prefix of a string in the language is viable
        if re.fullmatch(pattern, s):
            assert all(c.prefix(b(s)[:i]) == 0.0 for i in range(len(b(s)) + 1))

    check()


def test_laws_bytes_and_lifted_toy_vocab():
    c = pt.regex(r"(ab|c)*é?")
    ctxs = [b(""), b("ab"), b("abc"), b("a"), b("x"), list("é".encode())[:1], b("cé")]
    assert_potential_laws(c, ctxs, valid=[b("abcé"), b("")])
    # tokens that split the two bytes of é, an empty token, duplicates
    vocab = Vocabulary([b"a", b"b", b"ab", b"c", b"\xc3", b"\xa9", b"\xc3\xa9", b"", b"ab"])
    lc = c.lift(vocab)
    ctxs = [[], [2], [0, 1], [4], [4, 5], [3, 7], [0], [5]]
    assert_potential_laws(lc, ctxs, valid=[[2, 3, 4, 5], [0, 1, 6], [7]])


def test_token_answers_equal_byte_answers_on_random_tokens():
    rng = np.random.default_rng(0)
    c = pt.regex(r"[a-c]+(é|ü)?\d*")
    pieces = ["a", "b", "c", "ab", "bc", "é", "ü", "1", "12", "x", " "]
    toks = [p.encode() for p in pieces] + [b"\xc3", b"\xa9", b"\xbc", b"c\xc3"]
    vocab = Vocabulary(toks)
    lc = c.lift(vocab)
    for _ in range(60):
        ctx = rng.integers(0, len(vocab), size=int(rng.integers(0, 5))).tolist()
        data = list(vocab.decode_bytes(ctx))
        assert lc.prefix(ctx) == c.prefix(data)
        assert lc.complete(ctx) == c.complete(data)
        lw = lc.logw_next(ctx)
        want = [
            c.prefix(data + list(t)) - c.prefix(data) if c.prefix(data) == 0 else -np.inf
            for t in toks
        ]
        np.testing.assert_array_equal(lw[:-1], want)


def test_state_select_shares_and_advance_is_persistent():
    c = pt.regex(r"ab*c").lift(Vocabulary.from_strings(["a", "b", "c", "bc"]))
    s0 = c.init_state(2).advance(np.array([0, 0]))
    s1 = s0.select(np.array([1, 1, 0]))
    s2 = s1.advance(np.array([1, 3, 2]))
    np.testing.assert_array_equal(s2.complete(), [-np.inf, 0.0, 0.0])  # "ab", "abc", "ac"
    np.testing.assert_array_equal(s2.prefix(), [0.0, 0.0, 0.0])
    s3 = s2.advance(np.array([0, 0, 0]))
    np.testing.assert_array_equal(s3.prefix(), [-np.inf, -np.inf, -np.inf])
    # s0 and s1 are unchanged by the later advance
    np.testing.assert_array_equal(s0.logw_tokens(np.array([0, 1]), np.array([2, 3])), [0.0, 0.0])
    np.testing.assert_array_equal(s1.logw_next()[:, 4], [-np.inf] * 3)


@pytest.mark.parametrize(
    "pattern,needle",
    [
        ("a(", "not a valid regular expression"),
        (r"(a)\1", "back-reference"),
        (r"a(?=b)", "look-ahead"),
        (r"\bfoo", "anchor"),
        (r"a$b", "anchor"),
        (r"a*+", "possessive"),
        (r"[^\x00-\U0010FFFF]", "empty"),
    ],
)
def test_bad_patterns_raise(pattern, needle):
    with pytest.raises(ValueError, match=needle):
        pt.regex(pattern)


def test_pattern_type_error():
    with pytest.raises(TypeError, match="`pattern`"):
        pt.regex(b"abc")  # type: ignore[arg-type]


@pytest.mark.real_model
@pytest.mark.parametrize("lm_name", ["gemma", "smollm"])
def test_real_tokenizers_agree_with_bytes(lm_name, request):
    vocab = request.getfixturevalue(lm_name).vocab
    c = pt.regex(r"\{\"name\": \"[A-Za-zé ]{1,12}\", \"age\": \d{1,3}\}")
    lc = c.lift(vocab)
    rng = np.random.default_rng(1)
    text = '{"name": "Zoé Ann", "age": 42}'
    ids = [vocab.index[t] for t in [text[:5].encode(), text[5:].encode()] if t in vocab.index]
    state = lc.init_state(1)
    for t in ids:  # any tokenization of a viable prefix is allowed
        assert state.logw_tokens(np.array([0]), np.array([t]))[0] == c.prefix(
            list(vocab.decode_bytes(state.contexts[0] + [t]))
        )
        state = state.advance(np.array([t]))
    toks = rng.integers(0, len(vocab), size=300)
    got = state.logw_tokens(np.zeros(300, dtype=np.int64), toks)
    base = list(vocab.decode_bytes(state.contexts[0]))
    want = [c.prefix(base + list(vocab.tokens[t])) for t in toks]
    np.testing.assert_array_equal(got, want)
    mask = state.logw_next()[0]
    np.testing.assert_array_equal(mask[toks], want)
