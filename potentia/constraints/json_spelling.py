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

An escape that cannot be decoded (``\x``, ``\u12G4``, a lone surrogate) passes through raw;
the engine refuses it (lone surrogates are the one spelling JSON's grammar admits that is
refused here; ``json.loads`` accepts them).

:class:`Spelling` holds, per vocabulary, which tokens the transducer may change, so that
token masks stay native for every other token.
"""

from __future__ import annotations

import weakref

import numpy as np

from potentia.potentials.base import Vocabulary

__all__ = ["feed", "canonical", "Spelling", "Lex", "START"]

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
            if len(self._step) < 1 << 16:
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
