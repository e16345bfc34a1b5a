"""Lexical constraints: exact semantics against independent references, laws, lifting."""

from __future__ import annotations

import codecs
import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.constraints.automaton import vocab_tables
from potentia.constraints.bytedfa import UTF8, nonascii_whitespace
from potentia.potentials.base import Vocabulary
from potentia.testing import assert_potential_laws

# Pieces that make valid text, split characters and invalid bytes.
PIECES = [
    b"a", b"b", b"c", b" ", b"E", b"e", "é".encode(), b"\xc3", b"\xa9", "日".encode(),
    b"\xe6", b"\x97\xa5", "\u3000".encode(), b"\xe3\x80", b"\xff", b"\n",
]  # fmt: skip
TOY = Vocabulary(
    [b"a", b"b", b"ab", b"ba", b" ", b"e", b"E", "é".encode(), b"\xc3", b"\xa9",
     "日".encode()[:2], "日".encode()[2:], "日".encode(), b"a b", b"\xff", b"", b"\xe3\x80",
     b"\x80", b"c"]
)  # fmt: skip
byte_strings = st.lists(st.sampled_from(PIECES), max_size=7).map(b"".join)


def partial(bs: bytes) -> tuple[str, bytes] | None:
    """Complete-character text and pending tail, or None if no completion is valid UTF-8.

    Python's incremental decoder holds some tails that can never complete (b"\\xed\\xa0", a
    surrogate), so a pending tail is also checked by trying its completions.
    """
    d = codecs.getincrementaldecoder("utf-8")()
    try:
        text = d.decode(bs, final=False)
    except UnicodeDecodeError:
        return None
    tail = d.getstate()[0]
    if tail and utf8_test(tail) is None:
        return None
    return text, tail


def full(bs: bytes) -> str | None:
    try:
        return bs.decode("utf-8")
    except UnicodeDecodeError:
        return None


def lw(ok: bool) -> float:
    return 0.0 if ok else -np.inf


def check_against(pot, bs: bytes, ref_prefix, ref_complete) -> None:
    """Every byte prefix of ``bs``: prefix and complete equal the references."""
    for i in range(len(bs) + 1):
        x = list(bs[:i])
        assert pot.prefix(x) == lw(ref_prefix(bs[:i])), (pot, bs[:i])
        assert pot.complete(x) == lw(ref_complete(bs[:i])), (pot, bs[:i])


def _char_prefixes() -> dict[bytes, str]:
    """Every proper prefix of a character's UTF-8 encoding -> one character it can become."""
    out: dict[bytes, str] = {}
    cps = [*range(0x80, 0xD800), *range(0xE000, 0x10000), *range(0x10000, 0x110000, 64)]
    for cp in cps:
        enc = chr(cp).encode()
        for k in range(1, len(enc)):
            out.setdefault(enc[:k], chr(cp))
    return out


CHAR_PREFIXES = _char_prefixes()


def utf8_test(tail: bytes) -> str | None:
    """Some character whose encoding starts with ``tail`` (None if there is none)."""
    return CHAR_PREFIXES.get(tail)


# ----- UTF-8 table ----------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=8))
def test_utf8_table_matches_python_decoder(bs):
    u = 0
    for i, b in enumerate(bs):
        u = int(UTF8[u, b])
        ref = partial(bs[: i + 1])
        assert (u >= 0) == (ref is not None)
        if u < 0:
            break
        assert (u == 0) == (ref[1] == b"")


def test_utf8_table_is_exactly_utf8():
    # pending states reached within one character = proper prefixes of real encodings
    pending: set[bytes] = set()
    frontier = [(b"", 0)]
    complete_by_len = [0] * 5
    while frontier:
        nxt = []
        for bs, u in frontier:
            for b in range(256):
                v = int(UTF8[u, b])
                if v > 0:
                    pending.add(bs + bytes((b,)))
                    nxt.append((bs + bytes((b,)), v))
                elif v == 0:
                    complete_by_len[len(bs) + 1] += 1
        frontier = nxt
    assert pending == set(CHAR_PREFIXES)
    # and the completed characters are exactly the code points of each length
    assert complete_by_len == [0, 128, 0x800 - 0x80, 0x10000 - 0x800 - 0x800, 0x100000]


def test_words_split_on_unicode_whitespace():
    two = pt.length(max=1, unit="words")
    for ws in ["\u3000", "\u00a0", "\u2028", "\x1c", "\n"]:
        assert two.complete(list(f"a{ws}b".encode())) == -np.inf, ws
        assert two.complete(list(f"ab{ws}".encode())) == 0.0, ws
    assert two.complete(list("a\u3001b".encode())) == 0.0  # ideographic comma is no space
    # after "a", the bytes e3 80 could still become U+3000 (a space): viable under max=1
    assert two.prefix(list(b"a\xe3\x80")) == 0.0
    assert two.prefix(list(b"a\xe3\x80\x80")) == 0.0
    assert two.prefix(list(b"a\xe3\x80\x80b")) == -np.inf


# ----- excludes ---------------------------------------------------------------------------
def ban_regex(terms, ignore_case):
    def alt(c):
        opts = {c, c.lower(), c.upper(), c.swapcase()} if ignore_case else {c}
        return "(?:" + "|".join(map(re.escape, sorted(opts))) + ")"

    return re.compile("|".join("".join(alt(c) for c in t) for t in terms))


@settings(max_examples=60, deadline=None)
@given(
    byte_strings,
    st.lists(st.text("abeé日 ", min_size=1, max_size=3), min_size=0, max_size=3),
    st.text("eEé", max_size=2),
    st.booleans(),
)
def test_excludes_is_exact(bs, strings, letters, ignore_case):
    if not strings and not letters:
        strings = ["ab"]
    pot = pt.excludes(*strings, letters=letters, ignore_case=ignore_case)
    rx = ban_regex(list(strings) + list(letters), ignore_case)

    def ok_prefix(b):
        p = partial(b)
        return p is not None and not rx.search(p[0])

    def ok_complete(b):
        t = full(b)
        return t is not None and not rx.search(t)

    check_against(pot, bs, ok_prefix, ok_complete)


def test_excludes_lipogram_examples():
    pot = pt.excludes(letters="e", ignore_case=True)
    assert pot.complete(list(b"A bold window")) == 0.0
    assert pot.complete(list(b"A bold windowE")) == -np.inf
    assert pot.prefix(list("café".encode())) == 0.0  # é is not e
    names = pt.excludes("Bob", "Alice")
    assert names.complete(list(b"Bo and Alic")) == 0.0
    assert names.prefix(list(b"hi Bob")) == -np.inf


# ----- contains -----------------------------------------------------------------------------
def min_completion(text: str, terms: list[str], unit: str, limit: int) -> int | None:
    """Least number of units to append so that every term occurs (brute force)."""
    alphabet = sorted(set("".join(terms)))
    size = (lambda s: len(s)) if unit == "chars" else (lambda s: len(s.encode()))
    for n in range(0, limit + 1):
        for ys in itertools.product(alphabet, repeat=n):
            y = "".join(ys)
            if all(t in text + y for t in terms):
                return size(y)
    return None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b"b", b"x", "é".encode(), b"\xc3", b"\xa9"]), max_size=6).map(
        b"".join
    ),
    st.lists(st.text("ab", min_size=1, max_size=3), min_size=1, max_size=3),
    st.integers(2, 7),
    st.sampled_from(["chars", "bytes"]),
)
def test_contains_with_budget_is_exact(bs, terms, budget, unit):
    size = len if unit == "chars" else (lambda s: len(s.encode()))
    if min_completion("", terms, unit, budget) is None:
        with pytest.raises(ValueError, match="max_length"):
            pt.contains(*terms, max_length=budget, unit=unit)
        return
    pot = pt.contains(*terms, max_length=budget, unit=unit)

    def ok_prefix(b):
        p = partial(b)
        if p is None:
            return False
        # a pending character is non-ASCII, so it is in no term: any completion of it will do
        base = p[0] + (utf8_test(p[1]) if p[1] else "")
        rest = budget - size(base)
        return rest >= 0 and min_completion(base, terms, unit, rest) is not None

    def ok_complete(b):
        t = full(b)
        return t is not None and size(t) <= budget and all(w in t for w in terms)

    check_against(pot, bs, ok_prefix, ok_complete)


def test_contains_examples_and_errors():
    c = pt.contains("abc", "cde", max_length=7)
    assert c.prefix(list(b"xx")) == 0.0  # "xxabcde" fits
    assert c.prefix(list(b"xxx")) == -np.inf
    assert c.complete(list(b"abcde")) == 0.0
    assert pt.contains("abc").prefix(list(b"x" * 100)) == 0.0  # no budget: anything goes
    with pytest.raises(ValueError, match="max_length"):
        pt.contains("abc", "def", max_length=5)
    with pytest.raises(ValueError, match="at least one term"):
        pt.contains()
    with pytest.raises(TypeError, match=r"`terms\[0\]`"):
        pt.contains(3)
    with pytest.raises(ValueError, match="`unit`"):
        pt.contains("a", unit="words")
    ci = pt.contains("Rome", ignore_case=True)
    assert ci.complete(list(b"in ROME")) == 0.0


# ----- length ---------------------------------------------------------------------------------
def words_min(text: str, tail: bytes) -> int:
    if not tail:
        return len(text.split())
    if any(c.encode().startswith(tail) for c in nonascii_whitespace()):
        return len(text.split())
    return len((text + "x").split())


@settings(max_examples=60, deadline=None)
@given(
    byte_strings,
    st.integers(0, 4),
    st.integers(0, 6),
    st.sampled_from(["chars", "bytes", "words", "tokens"]),
)
def test_length_is_exact(bs, lo, span, unit):
    hi = lo + span
    pot = pt.length(lo, hi, unit=unit)

    def count_min(b):  # least final count of any completion, and the count of a finished text
        text, tail = partial(b)
        if unit == "chars":
            return len(text) + (1 if tail else 0)
        if unit == "words":
            return words_min(text, tail)
        need = len(utf8_test(tail).encode()) - len(tail) if tail else 0
        return len(b) + need  # bytes, and tokens of the byte vocabulary

    def ok_prefix(b):
        return partial(b) is not None and count_min(b) <= hi

    def ok_complete(b):
        return full(b) is not None and lo <= count_min(b) <= hi

    check_against(pot, bs, ok_prefix, ok_complete)


def test_length_errors():
    with pytest.raises(ValueError, match="`min`=3 > `max`=2"):
        pt.length(3, 2)
    with pytest.raises(ValueError, match="`unit`"):
        pt.length(max=3, unit="lines")
    with pytest.raises(ValueError, match="`max`"):
        pt.length(max=-1)


# ----- span_of --------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(byte_strings, st.text("abé日 ", max_size=12), st.booleans())
def test_span_of_is_exact(bs, passage, allow_empty):
    if not passage and not allow_empty:
        with pytest.raises(ValueError, match="`passage` is empty"):
            pt.span_of(passage, allow_empty=allow_empty)
        return
    pot = pt.span_of(passage, allow_empty=allow_empty)
    pb = passage.encode()
    starts = [len(passage[:i].encode()) for i in range(len(passage) + 1)]

    def ok_prefix(b):
        return any(pb.startswith(b, i) for i in starts)

    def ok_complete(b):
        t = full(b)
        return t is not None and t in passage and (allow_empty or t != "")

    check_against(pot, bs, ok_prefix, ok_complete)
    # every span of the passage is accepted with every prefix viable
    for i in range(len(passage)):
        for j in range(i + 1, len(passage) + 1):
            s = list(passage[i:j].encode())
            assert pot.complete(s) == 0.0
            assert all(pot.prefix(s[:k]) == 0.0 for k in range(len(s) + 1))


# ----- laws and lifting -----------------------------------------------------------------------
def constraints():
    return [
        pt.excludes("ab", "日", letters="E"),
        pt.contains("ab", "é", max_length=5),
        pt.contains("ba"),
        pt.length(1, 3, unit="chars"),
        pt.length(max=2, unit="words"),
        pt.length(1, 3, unit="tokens"),
        pt.length(max=4, unit="bytes"),
        pt.span_of("ab é日 ba"),
    ]


CTX = [list(c) for n in range(3) for c in itertools.product(range(len(TOY)), repeat=n)]
CTX = [c for c in CTX if len(c) < 2] + CTX[len(TOY) + 1 :: 7]


@pytest.mark.parametrize("i", range(8))
def test_laws_on_toy_vocabulary(i):
    c = constraints()[i]
    lifted = c.lift(TOY)
    valid = [ctx for ctx in CTX if lifted.complete(ctx) == 0.0]
    assert_potential_laws(lifted, CTX, valid=valid[:20])
    byte_ctx = [list(TOY.decode_bytes(x)) for x in CTX[:60]]
    assert_potential_laws(c, byte_ctx, valid=[list(TOY.decode_bytes(x)) for x in valid[:10]])


@pytest.mark.parametrize("i", range(8))
def test_tokens_equal_bytes_on_toy_vocabulary(i):
    c = constraints()[i]
    lifted = c.lift(TOY)
    rng = np.random.default_rng(i)
    unit_tokens = i == 5  # length in tokens counts the vocabulary's tokens, not bytes
    state = lifted.init_state(1)
    ctx: list[int] = []
    for _ in range(6):
        lw_next = state.logw_next()[0]
        V = len(TOY)
        toks = np.arange(V + 1)
        got = state.logw_tokens(np.zeros(V + 1, dtype=np.int64), toks)
        np.testing.assert_array_equal(got, lw_next)
        if not unit_tokens:
            for a in range(V):
                want = c.prefix(list(TOY.decode_bytes(ctx + [a])))
                assert lw_next[a] == want, (c, ctx, a)
            assert lw_next[V] == c.complete(list(TOY.decode_bytes(ctx)))
        allowed = np.flatnonzero(lw_next[:V] > -np.inf)
        if not len(allowed):
            break
        a = int(rng.choice(allowed))
        ctx.append(a)
        state = state.advance(np.array([a]))


def test_trie_tables_cover_every_token():
    t = vocab_tables(TOY)
    assert sorted(t.tok_ids.tolist()) == list(range(len(TOY)))
    for node in range(t.n_nodes):
        for k in range(t.tok_ptr[node], t.tok_ptr[node + 1]):
            assert len(TOY.tokens[t.tok_ids[k]]) == t.node_depth[node]


def test_front_door_lifts_automatically():
    from potentia.models.toy import random_ngram

    lm = random_ngram(np.random.default_rng(0), TOY, 2, 1.0, 1.0, 0.0)
    out = pt.sample(lm, None, pt.span_of("ab ba"), particles=8, max_tokens=6, seed=1)
    for s in out.posterior:
        text = s if isinstance(s, str) else TOY.decode(s)
        assert text in "ab ba" and text


# ----- real tokenizers ----------------------------------------------------------------------
PASSAGE = "Marie Curie (née Skłodowska) won two Nobel prizes — physics 1903, chemistry 1911 🙂."


def real_constraints():
    return {
        "excludes": pt.excludes("Nobel", letters="e", ignore_case=True),
        "contains": pt.contains("prize", " 19", max_length=24),
        "words": pt.length(1, 6, unit="words"),
        "chars": pt.length(max=20),
        "span_of": pt.span_of(PASSAGE),
        "tokens": pt.length(2, 5, unit="tokens"),
    }


@pytest.mark.real_model
@pytest.mark.parametrize("which", ["gemma", "smollm"])
def test_tokens_equal_bytes_on_real_vocabularies(which, request):
    vocab = request.getfixturevalue(which).vocab
    V = len(vocab)
    rng = np.random.default_rng(7)
    for name, c in real_constraints().items():
        lifted = c.lift(vocab)
        state = lifted.init_state(1)
        ctx: list[int] = []
        walk = [[]]
        for _ in range(6):
            lw_next = state.logw_next()[0]
            allowed = np.flatnonzero(lw_next[:V] > -np.inf)
            toks = np.concatenate(
                [rng.choice(V, 150), rng.choice(allowed, min(50, len(allowed))), [V]]
            ).astype(np.int64)
            got = state.logw_tokens(np.zeros(len(toks), dtype=np.int64), toks)
            np.testing.assert_array_equal(got, lw_next[toks], err_msg=name)
            if name == "tokens":  # counts this vocabulary's tokens: own reference
                # both vocabularies have every continuation byte as a token, so a pending
                # character needs exactly one more token
                for a in toks[:-1]:
                    p = partial(vocab.decode_bytes(ctx + [int(a)]))
                    ok = p is not None and len(ctx) + 1 + (1 if p[1] else 0) <= 5
                    assert lw_next[a] == lw(ok), (ctx, int(a), vocab.tokens[a])
                done = full(vocab.decode_bytes(ctx)) is not None and 2 <= len(ctx) <= 5
                assert lw_next[V] == lw(done)
            else:
                for a in toks[:-1]:
                    want = c.prefix(list(vocab.decode_bytes(ctx + [int(a)])))
                    assert lw_next[a] == want, (name, ctx, int(a), vocab.tokens[a])
                assert lw_next[V] == c.complete(list(vocab.decode_bytes(ctx))), (name, ctx)
            if not len(allowed):
                break
            ctx.append(int(rng.choice(allowed)))
            state = state.advance(np.array(ctx[-1:]))
            walk.append(list(ctx))
        assert_potential_laws(lifted, walk, valid=[w for w in walk if lifted.complete(w) == 0])
