"""Verse: the syllable automaton and suffix rhymes, exact against brute-force references."""

from __future__ import annotations

import codecs
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.constraints.verse import rhyme_key, syllable_counts, word_syllables
from potentia.potentials.base import Vocabulary
from potentia.testing import assert_potential_laws

PIECES = [b"a", b"e", b"l", b"b", b"y", b"E", b" ", b",", b"\n", "é".encode(), b"\xc3", b"\xff"]
byte_strings = st.lists(st.sampled_from(PIECES), max_size=14).map(b"".join)
EXTS = [""] + ["".join(p) for k in (1, 2) for p in itertools.product("abely", repeat=k)]


def decode_partial(bs: bytes) -> tuple[str, bytes] | None:
    """(text of complete characters, pending tail) or None if never valid UTF-8 (pieces only)."""
    d = codecs.getincrementaldecoder("utf-8")()
    try:
        text = d.decode(bs, final=False)
    except UnicodeDecodeError:
        return None
    return text, d.getstate()[0]


def ref_complete(bs: bytes, budgets: list[int]) -> bool:
    try:
        text = bs.decode("utf-8")
    except UnicodeDecodeError:
        return False
    counts = syllable_counts(text)
    if len(counts) == len(budgets) + 1 and text.endswith("\n"):
        counts = counts[:-1]
    return counts == budgets


def ref_prefix(bs: bytes, budgets: list[int]) -> bool:
    """Viable iff the ended lines are on budget and the open line can still end on it.

    The open line's least final count: its finished words plus the least count of its open
    word over every short extension (a pending multi-byte character ends the word: it is no
    ASCII letter). Any count from there up is reachable (add words "a", 1 syllable each),
    and later lines can always be filled the same way.
    """
    got = decode_partial(bs)
    if got is None:
        return False
    text, tail = got
    N = len(budgets)
    lines = text.split("\n")
    if len(lines) > N + 1:
        return False
    if len(lines) == N + 1:
        return lines[-1] == "" and not tail and syllable_counts("\n".join(lines[:-1])) == budgets
    if lines[:-1] and syllable_counts("\n".join(lines[:-1])) != budgets[: len(lines) - 1]:
        return False
    cur = lines[-1]
    words = [w for w in cur.replace(",", " ").replace("é", " ").split(" ") if w]
    if cur and cur[-1].isascii() and cur[-1].isalpha() and not tail:
        least = sum(map(word_syllables, words[:-1])) + min(
            word_syllables(words[-1] + e) for e in EXTS
        )
    else:
        least = sum(map(word_syllables, words))
    return least <= budgets[len(lines) - 1]


def lw(ok: bool) -> float:
    return 0.0 if ok else -np.inf


BUDGETS = [[1], [2, 1], [0, 2], [3, 0, 1], [4]]


@settings(max_examples=250, deadline=None)
@given(byte_strings, st.sampled_from(BUDGETS))
def test_syllables_is_exact(bs, budgets):
    c = pt.syllables(budgets)
    for i in range(len(bs) + 1):
        x = bs[:i]
        assert c.prefix(list(x)) == lw(ref_prefix(x, budgets)), (budgets, x)
        assert c.complete(list(x)) == lw(ref_complete(x, budgets)), (budgets, x)


def test_syllables_exhaustive_on_short_strings():
    budgets = [1, 2]
    c = pt.syllables(budgets)
    alphabet = [b"a", b"e", b"l", b"b", b" ", b"\n"]
    n = 0
    for k in range(6):
        for p in itertools.product(alphabet, repeat=k):
            x = b"".join(p)
            assert c.prefix(list(x)) == lw(ref_prefix(x, budgets)), x
            assert c.complete(list(x)) == lw(ref_complete(x, budgets)), x
            n += 1
    assert n == sum(6**k for k in range(6))


def test_word_heuristic_examples():
    words = {"table": 2, "whale": 1, "cake": 1, "the": 1, "there": 1, "beautiful": 3,
             "agree": 2, "belle": 2, "hmm": 1, "apple": 2, "yes": 1, "Silence": 2, "be": 1}  # fmt: skip
    for w, n in words.items():
        assert word_syllables(w) == n, w
        assert pt.syllables([n]).complete(list(w.encode())) == 0.0, w
        assert pt.syllables([n + 1]).complete(list(w.encode())) == -np.inf, w
    haiku = "An old silent pond\nA frog jumps into the pond\nSplash! Silence again\n"
    assert syllable_counts(haiku)[:3] == [5, 7, 5]
    assert pt.syllables([5, 7, 5]).complete(list(haiku.encode())) == 0.0
    # a line over its budget is dead at once, and so is an open vowel-less word at the budget
    assert pt.syllables([5, 7, 5]).prefix(list(b"An old silent pond to")) == -np.inf
    assert pt.syllables([1]).prefix(list(b"cat")) == 0.0
    assert pt.syllables([1]).prefix(list(b"cat b")) == -np.inf
    with pytest.raises(ValueError, match=r"`word`"):
        word_syllables("a b")


def test_intersect_with_a_lipogram_is_exact():
    lip = pt.excludes(letters="e", ignore_case=True)
    both = pt.intersect(pt.syllables([2, 1]), lip)
    prod = pt.syllables([2, 1]) & lip

    def ref(bs):
        return ref_prefix(bs, [2, 1]) and b"e" not in bs and b"E" not in bs

    for k in range(5):
        for p in itertools.product([b"a", b"e", b"b", b" ", b"\n"], repeat=k):
            x = b"".join(p)
            assert both.prefix(list(x)) == lw(ref(x)), x
            assert both.complete(list(x)) == lw(ref_complete(x, [2, 1]) and ref(x)), x
            assert both.prefix(list(x)) == prod.prefix(list(x)), x
    # where the product of prefix tests is not exact, the intersection is:
    a, b = pt.contains("abc"), pt.length(max=5)
    assert (a & b).prefix(list(b"xyz")) == 0.0
    assert pt.intersect(a, b).prefix(list(b"xyz")) == -np.inf
    assert pt.intersect(a, b).prefix(list(b"xyab")) == 0.0
    with pytest.raises(ValueError, match="one budget"):
        pt.intersect(pt.length(max=3), pt.contains("a", max_length=3))
    with pytest.raises(TypeError, match=r"`constraints\[1\]`"):
        pt.intersect(lip, pt.regex("a"))
    with pytest.raises(ValueError, match="no text"):
        pt.intersect(pt.span_of("abc"), pt.excludes("a", "b", "c"))


# ----- suffix rhymes -----------------------------------------------------------------------
def rhyme_complete(text: str, scheme: str, letters: int) -> bool:
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    if len(lines) != len(scheme):
        return False
    keys = [rhyme_key(line, letters) for line in lines]
    return None not in keys and all(
        keys[i] == keys[j]
        for i in range(len(scheme))
        for j in range(len(scheme))
        if scheme[i] == scheme[j]
    )


@pytest.mark.parametrize("scheme", ["AA", "AB", "ABA"])
def test_suffix_rhyme_is_exact_by_brute_force(scheme):
    """Viable iff some completion of at most 5 characters is accepted (enough: "a\\nb\\na")."""
    alphabet = "ab \n"
    c = pt.suffix_rhyme(scheme, letters=1)
    exts = [""] + ["".join(p) for k in range(1, 6) for p in itertools.product(alphabet, repeat=k)]
    for k in range(4):
        for p in itertools.product(alphabet, repeat=k):
            x = "".join(p)
            viable = any(rhyme_complete(x + e, scheme, 1) for e in exts)
            assert c.prefix(list(x.encode())) == lw(viable), (scheme, x)
            assert c.complete(list(x.encode())) == lw(rhyme_complete(x, scheme, 1)), (scheme, x)


def test_suffix_rhyme_examples_and_errors():
    c = pt.suffix_rhyme("AABB", letters=2)
    ok = "The cat sat.\nA hat, flat\nthe dog\na log!\n"
    assert c.complete(list(ok.encode())) == 0.0
    assert c.prefix(list(b"The cat\nthe dog\n")) == -np.inf
    assert c.prefix(list(b"The cat\nthe dog")) == 0.0  # line 2 is still open
    assert c.prefix(list(ok.encode() + b"x")) == -np.inf  # a fifth line
    with pytest.raises(ValueError, match="`scheme`"):
        pt.suffix_rhyme("")
    with pytest.raises(ValueError, match="`letters`"):
        pt.suffix_rhyme("AA", letters=0)
    with pytest.raises(ValueError, match=r"`per_line\[1\]`"):
        pt.syllables([1, -1])


TOY = Vocabulary(
    [b"a", b"e", b"b", b"l", b" ", b"\n", b"ab", b"le", b" a", b"e\n", b"bla", "é".encode(),
     b"\xc3", b"\xa9", b"tab", b"ta", b"cat"]
)  # fmt: skip


@pytest.mark.parametrize("which", ["syllables", "intersect", "rhyme"])
def test_laws_on_toy_vocabulary(which):
    c = {
        "syllables": pt.syllables([2, 1]),
        "intersect": pt.intersect(pt.syllables([2, 1]), pt.excludes(letters="l")),
        "rhyme": pt.suffix_rhyme("AA", letters=1),
    }[which]
    lifted = c.lift(TOY)
    rng = np.random.default_rng(1)
    ctx = [[]]
    for _ in range(30):
        x = []
        for _ in range(int(rng.integers(1, 8))):
            ok = np.flatnonzero(lifted.logw_next(x)[:-1] == 0.0)
            if not len(ok):
                break
            x.append(int(rng.choice(ok)))
            ctx.append(list(x))
    ctx += [[4, 4, 5], [12, 0], [1, 1, 1], [0, 5, 0], [2, 5, 6], [0, 8, 5, 2]]
    valid = [x for x in ctx if lifted.complete(x) == 0.0]
    assert valid
    assert_potential_laws(lifted, ctx, valid=valid)
    for x in ctx:
        bs = list(TOY.decode_bytes(x))
        assert lifted.prefix(x) == c.prefix(bs) and lifted.complete(x) == c.complete(bs)


def test_suffix_rhyme_vector_equals_single_token_checks():
    """The fast vector (UTF-8 mask + newline tokens) equals one prefix call per token."""
    c = pt.suffix_rhyme("AAB", letters=1).lift(TOY)
    for text in [b"", b"ab", b"ab\n", b"ab\nb", b"ab\nb a", b"b\nab\n", b"b\nab\nl", b"b\nb\na\n"]:
        x = [TOY.index[bytes((ch,))] for ch in text]
        vec = c.logw_next(x)
        state = c.init_state(1).advance(np.array([x[0]])) if x else c.init_state(1)
        for t in x[1:]:
            state = state.advance(np.array([t]))
        toks = np.arange(len(TOY) + 1)
        single = state.logw_tokens(np.zeros(len(toks), dtype=np.int64), toks)
        base = c.prefix(x)
        want = [c.prefix(x + [t]) - base if base == 0 else -np.inf for t in range(len(TOY))]
        assert list(vec[:-1]) == want, text
        assert vec[-1] == c.complete(x) and list(single) == list(vec), text
