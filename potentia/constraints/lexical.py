"""Lexical constraints: banned strings, required terms, lengths, spans of a passage.

Every builder returns a hard byte-level potential (an :class:`AutomatonPotential` over
``Vocabulary.bytes256()``) whose :meth:`~AutomatonPotential.lift` gives the same language
over any token vocabulary, with O(len(token)) single-token checks and cached, compiled
full masks (see :mod:`potentia.constraints.automaton`). The front door lifts them to the
LM's vocabulary automatically.

Text semantics. The output is text: a byte string is accepted only if it is valid UTF-8,
and a prefix only if it can still be completed to valid UTF-8, so tokens may end inside a
multi-byte character. Because UTF-8 is self-synchronising, a term occurs in the text iff
its encoding occurs in the bytes; characters are code points; words are maximal runs of
characters that are not whitespace (exactly ``len(text.split())``).

Exactness. Prefix weights are exact everywhere: a prefix has weight 1 iff some completion
is accepted, budgets included (``contains(..., max_length=n)`` knows how many characters
the missing terms still need, overlaps with the text so far included). Combining two
constraints with ``&`` keeps soundness, but the product of two exact prefix tests is not
always the exact prefix test of the intersection (e.g. ``contains("abc") & length(max=5)``
accepts the prefix ``"xyz"``; ``contains("abc", max_length=5)`` does not).
"""

from __future__ import annotations

import itertools

import numpy as np

from potentia.constraints.automaton import AutomatonPotential
from potentia.constraints.bytedfa import (
    ByteDFA,
    aho_corasick,
    char_class_dfa,
    nonascii_whitespace,
    suffix_automaton,
    utf8_dfa,
)
from potentia.potentials.base import Vocabulary

__all__ = ["excludes", "contains", "length", "span_of", "UNITS"]

_BYTES = Vocabulary.bytes256()
UNITS = ("chars", "bytes", "words", "tokens")
_MAX_VARIANTS = 4096


def _terms(values: tuple, arg: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"`{arg}[{i}]` is {v!r} of type {type(v).__name__}; pass strings.")
        if not v:
            raise ValueError(f"`{arg}[{i}]` is the empty string; every term needs a character.")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"`{arg}[{i}]` is {v!r}, which is not valid text ({exc}).") from None
        out.append(v)
    return list(dict.fromkeys(out))


def _variants(term: str, ignore_case: bool) -> list[bytes]:
    if not ignore_case:
        return [term.encode("utf-8")]
    options = [sorted({c, c.lower(), c.upper(), c.swapcase()}) for c in term]
    n = int(np.prod([len(o) for o in options]))
    if n > _MAX_VARIANTS:
        raise ValueError(
            f"`ignore_case` on {term!r} gives {n} spellings (more than {_MAX_VARIANTS}); "
            "use a shorter term or list the spellings you mean."
        )
    return sorted({"".join(p).encode("utf-8") for p in itertools.product(*options)})


def _check_bool(value: object, arg: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"`{arg}` is {value!r}; pass True or False.")


def excludes(*strings: str, letters: str = "", ignore_case: bool = False) -> AutomatonPotential:
    """Text that contains none of ``strings`` and none of the characters in ``letters``.

    Example: ``excludes(letters="e", ignore_case=True)`` is a lipogram without "e" or "E";
    ``excludes("Bob", "Alice")`` bans two names.

    Args:
        *strings: Banned substrings.
        letters: Banned characters (each character of this string).
        ignore_case: Also ban every upper/lower-case spelling (per character).

    Returns:
        A hard byte-level potential with exact prefix weights.

    Raises:
        TypeError: if a string or ``letters`` is not a ``str``.
        ValueError: if nothing is banned, or a banned string is empty.
    """
    _check_bool(ignore_case, "ignore_case")
    if not isinstance(letters, str):
        raise TypeError(f"`letters` is {letters!r}; pass a string of characters to ban.")
    terms = _terms(strings, "strings") + _terms(tuple(letters), "letters")
    if not terms:
        raise ValueError("`excludes()` bans nothing; pass strings or `letters=`.")
    patterns = sorted({v for t in terms for v in _variants(t, ignore_case)})
    goto, out = aho_corasick(patterns, [0] * len(patterns))
    delta = np.where(out[goto] != 0, -1, goto).astype(np.int32)
    ban = ByteDFA(delta, np.ones(len(goto), dtype=np.bool_))
    dfa = ban.product(utf8_dfa()).trimmed()
    shown = ", ".join(repr(t) for t in terms[:4]) + (", ..." if len(terms) > 4 else "")
    case = ", ignore_case=True" if ignore_case else ""
    return AutomatonPotential(dfa, _BYTES, label=f"excludes({shown}{case})")


def _found_dfa(goto: np.ndarray, out: np.ndarray, k: int, max_states: int) -> ByteDFA:
    """States (trie node, set of terms found so far); accepting when all k are found."""
    full = (1 << k) - 1
    ids = {(0, int(out[0])): 0}
    pairs = [(0, int(out[0]))]
    rows = []
    i = 0
    while i < len(pairs):
        a, m = pairs[i]
        na = goto[a].astype(np.int64)
        nm = out[na].astype(np.int64) | m
        keys, inv = np.unique(na * (full + 1) + nm, return_inverse=True)
        tgt = np.empty(len(keys), dtype=np.int32)
        for j, key in enumerate(keys.tolist()):
            pair = divmod(key, full + 1)
            t = ids.get(pair)
            if t is None:
                t = ids[pair] = len(pairs)
                pairs.append(pair)
                if len(pairs) > max_states:
                    raise ValueError(
                        f"`terms`: the automaton exceeds {max_states} states; use fewer or "
                        "shorter terms."
                    )
            tgt[j] = t
        rows.append(tgt[inv.reshape(-1)])
        i += 1
    accept = np.array([m == full for _, m in pairs], dtype=np.bool_)
    return ByteDFA(np.stack(rows), accept)


def contains(
    *terms: str,
    max_length: int | None = None,
    unit: str = "chars",
    ignore_case: bool = False,
) -> AutomatonPotential:
    """Text in which every one of ``terms`` occurs (in any order; occurrences may overlap).

    Without ``max_length`` every valid-UTF-8 prefix is viable and the check happens at EOS.
    With it, the text may be at most ``max_length`` units long and a prefix is viable iff
    the missing terms still fit: the least number of units that completes it is
    precomputed for every automaton state.

    Args:
        *terms: Required substrings (at most 16).
        max_length: Largest length of the whole text, or ``None``.
        unit: ``"chars"`` or ``"bytes"`` (the unit of ``max_length``).
        ignore_case: Accept any upper/lower-case spelling of each term.

    Returns:
        A hard byte-level potential with exact prefix weights.

    Raises:
        ValueError: if no term is given, more than 16, or the terms cannot fit in
            ``max_length``.
    """
    _check_bool(ignore_case, "ignore_case")
    words = _terms(terms, "terms")
    if not words:
        raise ValueError("`contains()` needs at least one term.")
    if len(words) > 16:
        raise ValueError(f"`terms` has {len(words)} terms; at most 16 are supported.")
    if unit not in ("chars", "bytes"):
        raise ValueError(f"`unit` is {unit!r}; contains counts 'chars' or 'bytes'.")
    if max_length is not None and (
        not isinstance(max_length, int | np.integer)
        or isinstance(max_length, bool)
        or max_length < 0
    ):
        raise ValueError(f"`max_length` is {max_length!r}; pass an int >= 0 or None.")
    patterns, labels = [], []
    for i, w in enumerate(words):
        for v in _variants(w, ignore_case):
            patterns.append(v)
            labels.append(i)
    goto, out = aho_corasick(patterns, labels)
    found = _found_dfa(goto, out, len(words), 1 << 18)
    counter = utf8_dfa(unit if max_length is not None else None)
    dfa = found.product(counter).trimmed()
    shown = ", ".join(repr(w) for w in words[:4]) + (", ..." if len(words) > 4 else "")
    budget = "" if max_length is None else f", max_length={max_length}, unit={unit!r}"
    label = f"contains({shown}{budget})"
    if max_length is not None and dfa.dist[0] > max_length:
        raise ValueError(
            f"{label}: the terms need at least {int(dfa.dist[0])} {unit} together, more than "
            f"`max_length`={max_length}; raise `max_length`."
        )
    return AutomatonPotential(dfa, _BYTES, budget=max_length, label=label)


def _words_dfa() -> ByteDFA:
    ascii_class = [0 if chr(b).isspace() else 1 for b in range(128)]
    special = {c: 0 for c in nonascii_whitespace()}
    # character states: 0 between words, 1 inside a word; class 0 space, 1 other
    cdelta = np.array([[0, 1], [0, 1]])
    ccost = np.array([[0, 1], [0, 0]])
    return char_class_dfa(ascii_class, special, 1, cdelta, ccost, np.array([True, True]))


def length(min: int = 0, max: int | None = None, *, unit: str = "chars") -> AutomatonPotential:
    """Text whose length lies in ``[min, max]``.

    Args:
        min: Smallest length.
        max: Largest length, or ``None`` for no upper bound.
        unit: ``"chars"`` (code points), ``"bytes"`` (UTF-8), ``"words"`` (as
            ``len(text.split())``) or ``"tokens"`` (tokens of the vocabulary the potential
            is lifted to; at the byte level, bytes). Prefix weights for tokens are exact
            given the vocabulary: the least number of its tokens that completes a pending
            character is precomputed.

    Returns:
        A hard byte-level potential with exact prefix weights.

    Raises:
        ValueError: on a negative bound, ``min > max`` or an unknown unit.
    """
    lo, hi = min, max
    for arg, v in (("min", lo), ("max", hi)):
        if v is None and arg == "max":
            continue
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 0:
            raise ValueError(f"`{arg}` is {v!r}; pass an int >= 0.")
    if hi is not None and lo > hi:
        raise ValueError(f"`min`={lo} > `max`={hi}: no text has such a length.")
    if unit not in UNITS:
        raise ValueError(f"`unit` is {unit!r}; choose one of {UNITS}.")
    if unit == "words":
        dfa = _words_dfa().trimmed()
    else:
        dfa = utf8_dfa(None if unit == "tokens" else unit).trimmed()
    label = f"length(min={lo}, max={hi}, unit={unit!r})"
    return AutomatonPotential(
        dfa, _BYTES, budget=hi, min_used=lo, token_cost=int(unit == "tokens"), label=label
    )


def span_of(passage: str, *, allow_empty: bool = False) -> AutomatonPotential:
    """Text that is a contiguous substring of ``passage`` (extractive answers).

    Prefix weights are exact: a prefix is viable iff it occurs in the passage starting at
    a character boundary. Built on the suffix automaton of the passage (at most ``2n``
    states for ``n`` bytes; its table takes about 2 KB per byte of passage).

    Args:
        passage: The text the output must be copied from.
        allow_empty: Whether the empty string is an acceptable answer.

    Returns:
        A hard byte-level potential with exact prefix weights.

    Raises:
        TypeError: if ``passage`` is not a ``str``.
        ValueError: if ``passage`` is empty and ``allow_empty`` is false, or not valid text.
    """
    _check_bool(allow_empty, "allow_empty")
    if not isinstance(passage, str):
        raise TypeError(f"`passage` is {type(passage).__name__}; pass the passage as a str.")
    try:
        data = passage.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"`passage` is not valid text ({exc}).") from None
    if not data and not allow_empty:
        raise ValueError(
            "`passage` is empty, so no non-empty span exists; pass a passage or allow_empty=True."
        )
    delta, endpos = suffix_automaton(data)
    delta[0, 0x80:0xC0] = -1  # a span starts at a character boundary
    nxt = np.append(np.frombuffer(data, dtype=np.uint8), np.uint8(0))[endpos + 1]
    accept = (nxt & 0xC0) != 0x80
    accept[0] = allow_empty
    dfa = ByteDFA(delta, accept).trimmed()
    short = passage if len(passage) <= 24 else passage[:21] + "..."
    return AutomatonPotential(dfa, _BYTES, label=f"span_of({short!r})")
