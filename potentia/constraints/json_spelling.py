r"""Canonical spelling of JSON strings, so the engine never sees a needless escape.

JSON lets a writer spell a character inside a string in several ways: ``A``, ``\u0041``;
``/``, ``\/``; ``é``, ``\u00e9``; ``😀``, ``\ud83d\ude00``. llguidance matches
``pattern``/``enum``/``const`` strings and property names only in their literal spelling,
and refuses ``\/`` everywhere, so a valid document written with such escapes would be cut.

:func:`feed` is a small streaming transducer over the raw bytes of a JSON text that
rewrites every ``\/`` and ``\uXXXX`` escape (surrogate pairs included) inside a string into
its canonical spelling — the one ``json.dumps(..., ensure_ascii=False)`` writes: the
character itself, ``\"`` and ``\\`` for the quote and backslash, ``\n``-style short
escapes or ``\u001f`` for control characters. Everything else passes unchanged. The decoded
value is the same, so the engine can run on the canonical stream: a prefix is viable iff
its canonical image (an unfinished escape at the end left out) is viable for the engine.
The canonical image only grows as bytes arrive, so the prefix language stays closed under
prefixes, and it contains every prefix of every valid document, whatever its spelling.

An unfinished escape at the end is viable only if some way of finishing it gives a
character the engine accepts there (:func:`pending_viable`): ``{"summar\u003`` is dead
for a schema whose only key is ``summary`` (``\u0030``–``\u003f`` are ``0``–``?``), and
``"abc\`` is dead where the string must close after ``abc``. Checking only the emitted image
would admit such a prefix and leave the sampler with no allowed token. The condition is
exact: a prefix ``x`` ending in an unfinished escape ``e`` extends to a valid document iff
some completion of ``e`` decodes to a character ``c`` with ``image(x)·canon(c)`` viable
(then a canonical rest follows), and it is monotone (a longer escape only narrows the
characters), so the prefix language stays prefix-closed.

An escape that cannot be decoded (``\x``, ``\u12G4``, a lone surrogate) passes through raw;
the engine refuses it (lone surrogates are the one spelling JSON's grammar admits that is
refused here; ``json.loads`` accepts them).

:class:`Spelling` holds, per vocabulary, which tokens the transducer may change, so that
token masks stay native for every other token.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

from potentia.potentials.base import Vocabulary

__all__ = ["feed", "canonical", "pending_chars", "pending_viable", "Spelling", "Lex", "START"]

#: Lexer state: (inside a string, the raw bytes of an unfinished escape).
Lex = tuple[bool, bytes]
START: Lex = (False, b"")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SHORT = frozenset(b'"\\bfnrt')


def _char(code: int) -> bytes:
    """The canonical spelling of one code point inside a JSON string."""
    c = chr(code)
    if c == '"':
        return b'\\"'
    if c == "\\":
        return b"\\\\"
    if code < 0x20:
        return {8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"}.get(
            code, f"\\u{code:04x}".encode()
        )
    return c.encode("utf-8")


def feed(state: Lex, data: bytes) -> tuple[Lex, bytes]:
    """Run the transducer on ``data`` from ``state``.

    Returns:
        The new state and the canonical bytes emitted (an unfinished escape at the end is
        held in the state, not emitted).
    """
    in_str, pend = state
    out = bytearray()
    queue = list(data)
    i = 0
    while i < len(queue):
        b = queue[i]
        i += 1
        if not in_str:
            out.append(b)
            in_str = b == 0x22
            continue
        if not pend:
            if b == 0x5C:
                pend = b"\\"
            else:
                out.append(b)
                in_str = b != 0x22
            continue
        pend += bytes([b])
        n = len(pend)
        if n == 2:  # after the backslash
            if b == 0x75:  # \u: wait for four hex digits
                continue
            out += b"/" if b == 0x2F else pend  # \/ is /; a short escape, or an invalid one, as is
            pend = b""
        elif n <= 6 or n >= 9:  # the hex digits of the first or the second escape
            if b not in _HEX:  # not a \u escape after all: flush raw (the engine refuses it)
                if n <= 6:
                    out += pend
                else:  # the high surrogate stands alone (raw); the rest is read again
                    out += pend[:6]
                    queue[i:i] = list(pend[6:])
                pend = b""
            elif n == 6:
                code = int(pend[2:6], 16)
                if 0xD800 <= code < 0xDC00:
                    continue  # a high surrogate: its pair may follow
                out += pend if 0xDC00 <= code < 0xE000 else _char(code)  # lone low: raw
                pend = b""
            elif n == 12:
                hi, lo = int(pend[2:6], 16), int(pend[8:12], 16)
                if 0xDC00 <= lo < 0xE000:
                    out += _char(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                else:  # the high surrogate stands alone (raw); the second escape restarts
                    out += pend[:6]
                    queue[i:i] = list(pend[6:])
                pend = b""
        elif (n == 7 and b != 0x5C) or (n == 8 and b != 0x75):
            out += pend[:6]  # a high surrogate not followed by \u: raw, the rest read again
            queue[i:i] = list(pend[6:])
            pend = b""
    return (in_str, pend), bytes(out)


def canonical(data: bytes) -> bytes:
    """The canonical spelling of a whole JSON text (an unfinished escape left out)."""
    return feed(START, data)[1]


def pending_chars(pend: bytes) -> list[tuple[int, int]]:
    r"""The code points that a completion of the unfinished escape ``pend`` can decode to.

    As inclusive ranges, surrogates excluded: a lone surrogate is flushed raw, which the
    engine refuses (like ``\x`` and ``\u12G4``), so it gives no character.

    Args:
        pend: The held bytes of a :data:`Lex` state: ``\``, ``\u`` with 0–3 hex digits, a
            high surrogate ``\uD8xx``, maybe followed by ``\``, ``\u`` and 0–3 hex digits.
    """
    n = len(pend)
    if n == 1:  # "\": a short escape or any \u escape, so any character
        return [(0, 0xD7FF), (0xE000, 0x10FFFF)]
    if n <= 5:  # "\u" and k hex digits: the BMP block they start, and the pairs it begins
        k = n - 2
        h = int(pend[2:], 16) if k else 0
        lo, hi = h << (4 * (4 - k)), ((h + 1) << (4 * (4 - k))) - 1
        out = [(a, b) for a, b in ((lo, min(hi, 0xD7FF)), (max(lo, 0xE000), hi)) if a <= b]
        a, b = max(lo, 0xD800), min(hi, 0xDBFF)
        if a <= b:
            out.append((0x10000 + ((a - 0xD800) << 10), 0x10000 + ((b - 0xD800) << 10) + 0x3FF))
        return out
    # a high surrogate held, maybe with "\", "\u" and k hex digits of its low half
    base = 0x10000 + ((int(pend[2:6], 16) - 0xD800) << 10)
    k = max(0, n - 8)
    low = int(pend[8:], 16) if k else 0
    a = max(low << (4 * (4 - k)), 0xDC00)
    b = min(((low + 1) << (4 * (4 - k))) - 1, 0xDFFF)
    return [(base + a - 0xDC00, base + b - 0xDC00)] if a <= b else []


#: Code points whose canonical spelling is an escape (quote, backslash, controls).
_ESCAPED_CODES = (*range(0x20), 0x22, 0x5C)
#: Where the UTF-8 length changes, and the escaped code points (removed from the plain runs).
_PLAIN_CUTS = [(0x20, 0x21), (0x23, 0x5B), (0x5D, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF)]
_PLAIN_CUTS.append((0x10000, 0x10FFFF))
_LEAD_MASK = {1: 0x7F, 2: 0x1F, 3: 0x0F, 4: 0x07}


def _decode_raw(data: bytes) -> int:
    """The code point a full-length UTF-8 byte pattern stands for (no validity checks)."""
    cp = data[0] & _LEAD_MASK[len(data)]
    for b in data[1:]:
        cp = (cp << 6) | (b & 0x3F)
    return cp


def _search(ok: Callable[[bytes], bool], head: bytes, lo: int, hi: int) -> bool:
    """Whether ``ok(head + utf8(c))`` for some ``c`` in ``[lo, hi]`` (one UTF-8 length).

    Depth first over the bytes, pruning every byte prefix the engine refuses (``ok`` is a
    prefix-viability test, so a refused prefix has no accepted extension).
    """
    n = len(chr(lo).encode())

    def go(prefix: bytes, lo: int, hi: int) -> bool:
        d, rest = len(prefix), n - len(prefix) - 1
        for x in range(chr(lo).encode()[d], chr(hi).encode()[d] + 1):
            block = prefix + bytes([x])
            s = max(lo, _decode_raw(block + b"\x80" * rest))
            e = min(hi, _decode_raw(block + b"\xbf" * rest))
            if s > e or not ok(head + block):
                continue
            if rest == 0 or go(block, s, e):
                return True
        return False

    return go(b"", lo, hi)


def pending_viable(ok: Callable[[bytes], bool], pend: bytes, head: bytes = b"") -> bool:
    r"""Whether the unfinished escape ``pend`` can still give a character the engine takes.

    Exact: some code point ``c`` of :func:`pending_chars` has ``ok(head + canon(c))``,
    with ``canon`` the canonical spelling (``\n`` for a newline, the UTF-8 bytes of a
    plain character). Cost: one ``ok`` call per character tried where the engine takes
    anything (inside a free string: one to four calls), at most a few hundred where it
    takes nothing.

    Args:
        ok: Prefix viability of canonical bytes from the engine's current state (after
            the bytes already emitted): ``ok(data)`` is true iff ``data`` can be continued
            to a document the engine accepts.
        pend: The unfinished escape (a :data:`Lex` state's second part; not empty).
        head: Canonical bytes emitted before the escape and not yet given to the engine.
    """
    ranges = pending_chars(pend)
    for lo, hi in ranges:
        for a, b in _PLAIN_CUTS:
            s, e = max(lo, a), min(hi, b)
            if s <= e and _search(ok, head, s, e):
                return True
    return any(lo <= c <= hi and ok(head + _char(c)) for lo, hi in ranges for c in _ESCAPED_CODES)


_CACHE: weakref.WeakKeyDictionary[Vocabulary, Spelling] = weakref.WeakKeyDictionary()


class Spelling:
    """The transducer over one token vocabulary.

    ``special[s]`` lists the tokens that, read from state ``(s, b"")``, are not passed
    through unchanged (they hold an escape the transducer rewrites, or end inside one);
    ``quote[s]`` lists those that leave the string state changed. Every other token keeps
    the engine's native mask.
    """

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.special: dict[bool, np.ndarray] = {}
        self.end: dict[bool, dict[int, bool]] = {False: {}, True: {}}
        spec: dict[bool, list[int]] = {False: [], True: []}
        for t, tb in enumerate(vocab.tokens):
            if b'"' not in tb and b"\\" not in tb:
                continue
            for s in (False, True):
                (s2, pend), out = feed((s, b""), tb)
                if pend or out != tb:
                    spec[s].append(t)
                elif s2 != s:
                    self.end[s][t] = s2
        for s in (False, True):
            self.special[s] = np.array(spec[s], dtype=np.int64)
        self._special_sets = {s: frozenset(spec[s]) for s in (False, True)}
        self._step: dict[tuple[Lex, int], tuple[Lex, list[int] | None]] = {}
        self._first = np.array([tb[0] if tb else -1 for tb in vocab.tokens], dtype=np.int64)
        self._cont: dict[bytes, np.ndarray] = {}

    def continuing(self, pend: bytes) -> np.ndarray:
        """The tokens whose first byte can continue the unfinished escape ``pend``.

        Any other token flushes the escape raw (an invalid escape, or a lone surrogate),
        which the engine refuses.
        """
        n = len(pend)
        if n == 1:
            ok = b'"\\/bfnrtu'
        elif n == 6:
            ok = b"\\"
        elif n == 7:
            ok = b"u"
        else:
            ok = bytes(_HEX)
        hit = self._cont.get(ok)
        if hit is None:
            hit = self._cont[ok] = np.flatnonzero(np.isin(self._first, list(ok)))
        return hit

    @classmethod
    def of(cls, vocab: Vocabulary) -> Spelling:
        """The (cached) transducer tables of ``vocab``."""
        sp = _CACHE.get(vocab)
        if sp is None:
            sp = _CACHE[vocab] = cls(vocab)
        return sp

    def encode(self, data: bytes) -> list[int]:
        """Token ids of ``data`` (any split serves the engine).

        Raises:
            ValueError: if a byte of canonical JSON text is not spellable.
        """
        try:
            return self.vocab.greedy_encode(data)
        except ValueError as e:
            raise ValueError(
                f"{e} The JSON constraint needs every byte of canonical JSON text to be spellable."
            ) from None

    def pending_ok(self, m: object, pend: bytes, head: bytes = b"") -> bool:
        """:func:`pending_viable` from the state of llguidance matcher ``m`` (not changed).

        ``ok(data)`` validates the tokens of ``data`` from ``m``; bytes this vocabulary
        cannot spell count as refused.
        """

        def ok(data: bytes) -> bool:
            try:
                toks = self.vocab.greedy_encode(data)
            except ValueError:
                return False
            return m.validate_tokens(toks) == len(toks)

        return pending_viable(ok, pend, head)

    def step(self, state: Lex, t: int) -> tuple[Lex, list[int] | None]:
        """Read token ``t`` from ``state``.

        Returns:
            The new state and the engine tokens to consume: ``None`` for ``[t]`` itself
            (passed through unchanged), else the canonical bytes' token ids (maybe empty).
        """
        if not state[1] and t not in self._special_sets[state[0]]:
            return (self.end[state[0]].get(t, state[0]), b""), None
        key = (state, t)
        hit = self._step.get(key)
        if hit is None:
            tb = self.vocab.tokens[t]
            new, out = feed(state, tb)
            hit = (new, None if out == tb and not state[1] else self.encode(out))
            if len(self._step) >= 1 << 18:  # full: start again (the old rule, keep the
                self._step.clear()  # first 65,536, made every later miss permanent)
            self._step[key] = hit
        return hit

    def walk(self, context: list[int]) -> tuple[Lex, list[int]]:
        """The state after ``context`` and the engine tokens of its canonical image."""
        state, toks = START, []
        for t in context:
            state, out = self.step(state, t)
            if out is None:
                toks.append(t)
            else:
                toks += out
        return state, toks
