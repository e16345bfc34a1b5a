"""Exact constrained targets for finite languages, on any LM (toy or real).

For a finite language L of byte strings and an LM P over a token vocabulary, the exact
constrained target over *token sequences* is

    P^L(x) = P(x EOS) · 1[bytes(x) ∈ L] / Z,     Z = Σ_{x : bytes(x) ∈ L} P(x EOS),

where x ranges over *every* tokenization of every string of L (a string has many). The
recipe: list L's strings (:func:`language_strings`, refusing an infinite language), list
each string's tokenizations (:func:`tokenizations`), and score them all with the LM in
one batched pass per depth over their shared prefixes (:func:`exact_finite_target`).

Tokens whose byte string is empty (special tokens) spell nothing and are never part of a
tokenization: the target is over sequences of non-empty tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from potentia.models.exact import ExactTarget
from potentia.potentials.base import Potential, Vocabulary

__all__ = ["language_strings", "tokenizations", "exact_finite_target", "FiniteTarget"]

#: Longest string explored when no ``max_bytes`` is given (beyond it: "maybe infinite").
DEFAULT_BYTE_LIMIT = 256


def language_strings(
    language: Potential | Iterable[str | bytes],
    max_bytes: int | None = None,
    max_strings: int = 100_000,
) -> list[bytes]:
    """Every string of a finite language, sorted.

    Args:
        language: A byte-level hard constraint (a potential over
            :meth:`Vocabulary.bytes256`, e.g. ``potentia.cfg(grammar)``), or an explicit
            collection of strings.
        max_bytes: Enumerate only strings of at most this many bytes (the target is then
            the language truncated to that length). ``None``: the language must be finite
            with no string longer than 256 bytes, otherwise a ``ValueError`` is raised.
        max_strings: Largest number of strings (and of live prefixes per length) allowed.

    Raises:
        TypeError: if ``language`` is a bare ``str`` or a soft / token-level potential.
        ValueError: if the language is infinite (or has strings longer than the limit)
            and no ``max_bytes`` was given, or it has more than ``max_strings`` strings.
    """
    if isinstance(language, str | bytes):
        raise TypeError(
            f"`language` is a single {type(language).__name__} ({language[:40]!r}); pass a "
            "byte-level constraint such as potentia.cfg(grammar_text), or a list of strings."
        )
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0
    ):
        raise ValueError(f"`max_bytes` is {max_bytes!r}; pass an int >= 0 or None.")
    if not isinstance(language, Potential):
        out = sorted({s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in language})
        if max_bytes is not None:
            out = [s for s in out if len(s) <= max_bytes]
        return out
    if not language.hard or language.vocab != Vocabulary.bytes256():
        raise TypeError(
            f"`language` ({language!r}) must be a hard constraint over bytes "
            "(Vocabulary.bytes256()), e.g. potentia.cfg(grammar) before lifting."
        )
    limit = DEFAULT_BYTE_LIMIT if max_bytes is None else max_bytes
    out: list[bytes] = []
    if language.prefix([]) == -np.inf:
        return out
    state, prefixes = language.init_state(1), [b""]
    for depth in range(limit + 1):
        lw = state.logw_next()
        out.extend(p for p, e in zip(prefixes, lw[:, 256]) if e > -np.inf)
        rows, cols = np.nonzero(lw[:, :256] > -np.inf)
        if len(out) > max_strings or len(rows) > max_strings:
            raise ValueError(
                f"the language has more than `max_strings`={max_strings} strings (or live "
                f"prefixes of {depth + 1} bytes); pass a smaller `max_bytes` or raise "
                "`max_strings`."
            )
        if not len(rows):
            return sorted(out)
        if depth == limit:
            break
        prefixes = [prefixes[r] + bytes([c]) for r, c in zip(rows, cols)]
        state = state.select(rows).advance(cols)
    if max_bytes is None:
        raise ValueError(
            f"the language has strings longer than {limit} bytes, so it may be infinite and "
            "cannot be enumerated. Pass a length bound, e.g. `max_bytes=32`, to enumerate "
            "the strings of at most that many bytes (the exact target of the truncated "
            "language)."
        )
    return sorted(out)


def tokenizations(
    string: bytes, vocab: Vocabulary, max_count: int = 1_000_000
) -> list[tuple[int, ...]]:
    """Every sequence of (non-empty) vocabulary positions whose bytes spell ``string``.

    Args:
        string: The byte string.
        vocab: The token vocabulary (duplicate byte strings give distinct sequences).
        max_count: Largest number of tokenizations allowed.

    Raises:
        ValueError: if there are more than ``max_count`` tokenizations.
    """
    if isinstance(string, str):
        string = string.encode("utf-8")
    by_bytes: dict[bytes, list[int]] = {}
    for i, t in enumerate(vocab.tokens):
        if t:
            by_bytes.setdefault(t, []).append(i)
    longest = max((len(t) for t in by_bytes), default=0)
    n = len(string)
    # count[i] = number of tokenizations of string[i:]; computed right to left
    count = [0] * (n + 1)
    count[n] = 1
    edges: list[list[tuple[int, int]]] = [[] for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, min(n, i + longest) + 1):
            for tok in by_bytes.get(string[i:j], ()):
                if count[j]:
                    edges[i].append((tok, j))
                    count[i] += count[j]
    if count[0] > max_count:
        raise ValueError(
            f"{string[:40]!r} has {count[0]} tokenizations, more than `max_count`={max_count}; "
            "use a shorter language or raise `max_count`."
        )
    out: list[tuple[int, ...]] = []
    stack: list[tuple[int, tuple[int, ...]]] = [(0, ())]
    while stack:
        i, acc = stack.pop()
        if i == n:
            out.append(acc)
            continue
        stack.extend((j, acc + (tok,)) for tok, j in edges[i])
    return sorted(out)


@dataclass
class FiniteTarget(ExactTarget):
    """An :class:`ExactTarget` over token sequences, built from a finite language.

    Attributes:
        strings: The language's strings.
        lm_calls: Next-token vectors the LM computed (one per distinct token prefix).
    """

    strings: list[bytes] = field(default_factory=list)
    lm_calls: int = 0
    vocab: Vocabulary | None = None

    def string_posterior(self) -> dict[bytes, float]:
        """Exact probability of every string (its tokenizations summed)."""
        out = dict.fromkeys(self.strings, 0.0)
        for x, p in self.posterior.items():
            out[self.vocab.decode_bytes(x)] += p
        return out


def exact_finite_target(
    lm: Potential,
    language: Potential | Iterable[str | bytes],
    max_bytes: int | None = None,
    batch_size: int = 64,
    on_row: Callable[[tuple[int, ...], np.ndarray], None] | None = None,
) -> FiniteTarget:
    """The exact constrained target of an LM over a finite language.

    Args:
        lm: The LM conditioned on its prompt, as a potential over its token vocabulary.
        language: A byte-level hard constraint or a collection of strings (see
            :func:`language_strings`).
        max_bytes: Length bound for an infinite language (see :func:`language_strings`).
        batch_size: Prefixes evaluated per LM call.
        on_row: Optional ``on_row(prefix, lm_row)`` called with every LM next-token vector
            computed, parents before children (e.g. to fill a :class:`~potentia.asap.trie.Trie`
            without recomputing).

    Raises:
        ValueError: for an infinite language without ``max_bytes``, or if no string of the
            language can be spelled with the vocabulary at positive LM probability.
    """
    strings = language_strings(language, max_bytes=max_bytes)
    vocab = lm.vocab
    seqs = [x for s in strings for x in tokenizations(s, vocab)]
    if not seqs:
        raise ValueError(
            f"the language is empty under the LM's vocabulary: none of its {len(strings)} "
            "strings can be spelled with the LM's (non-empty) tokens."
        )
    complete = set(seqs)
    # children of every prefix, level by level
    levels: list[list[tuple[int, ...]]] = [[()]]
    kids: dict[tuple[int, ...], list[int]] = {}
    for x in seqs:
        for i in range(len(x)):
            kids.setdefault(x[:i], [])
            if x[i] not in kids[x[:i]]:
                kids[x[:i]].append(x[i])
    V = len(vocab)
    log_prefix = {(): float(lm.prefix([]))}
    weights: dict[tuple[int, ...], float] = {}
    state = lm.init_state(1)
    calls = 0
    while levels[-1]:
        level = levels[-1]
        nxt, parents, toks = [], [], []
        for lo in range(0, len(level), batch_size):
            chunk = np.arange(lo, min(lo + batch_size, len(level)))
            lw = state.select(chunk).logw_next()
            calls += len(chunk)
            for k, r in enumerate(chunk):
                p = level[r]
                if on_row is not None:
                    on_row(p, lw[k])
                base = log_prefix[p]
                if p in complete:
                    weights[p] = base + float(lw[k, V])
                for t in sorted(kids.get(p, ())):
                    log_prefix[p + (t,)] = base + float(lw[k, t])
                    nxt.append(p + (t,))
                    parents.append(r)
                    toks.append(t)
        levels.append(nxt)
        if nxt:
            state = state.select(np.array(parents)).advance(np.array(toks, dtype=np.int64))
    max_len = max(len(x) for x in seqs)
    out = FiniteTarget(weights, max_len, strings=list(strings), lm_calls=calls, vocab=vocab)
    if out.log_z == -np.inf:
        raise ValueError(
            "the language is empty under the LM: every tokenization of every string has LM "
            "probability zero after this prompt."
        )
    return out
