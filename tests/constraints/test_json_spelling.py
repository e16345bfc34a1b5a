r"""Unfinished escapes in JSON strings: viable iff some completion gives an accepted character.

The reference is brute force and shares no code with potentia: over a finite language
(every valid document listed), a byte string is a viable prefix iff it is a prefix of
*some spelling* of some document, where a string character may be written literally (if
JSON allows), as a short escape (``\"``, ``\\``, ``\/``, ``\n``, …), as ``\uXXXX`` (either
case) or as a surrogate pair. Every prefix of many spellings, and every one-byte
extension of each, is compared with ``JSONSchema.prefix`` on bytes; a token vocabulary's
masks and single-token checks must agree with the byte level.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import potentia as pt
from potentia.constraints.json_spelling import pending_chars
from potentia.potentials import Vocabulary
from potentia.testing.laws import assert_potential_laws

HEX = b"0123456789abcdef"
SHORT = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f"}
SHORT |= {"\n": b"\\n", "\r": b"\\r", "\t": b"\\t"}

# (schema, every valid document's value): finite languages, structured mode (json.dumps)
CASES = [
    ({"enum": ["x<y", "é", "😀", "\n", '"/\\']}, ["x<y", "é", "😀", "\n", '"/\\']),
    (
        {
            "type": "object",
            "properties": {"k<": {"enum": ["é", "😀"]}, "ab": {"const": "z"}},
            "required": ["k<"],
        },
        [{"k<": v, **extra} for v in ("é", "😀") for extra in ({}, {"ab": "z"})],
    ),
    (
        {
            "type": "object",
            "properties": {"summary": {"enum": ["ok"]}},
            "required": ["summary"],
        },
        [{"summary": "ok"}],
    ),
]


def units(doc: str) -> list[object]:
    """A canonical document as units: a structural byte (int) or a string character (str)."""
    out: list[object] = []
    i, in_str = 0, False
    while i < len(doc):
        ch = doc[i]
        if not in_str:
            out.extend(ch.encode())
            in_str = ch == '"'
            i += 1
        elif ch == '"':
            out.append(ord('"'))
            in_str, i = False, i + 1
        elif ch == "\\":
            esc = doc[i : i + 2]
            if esc == "\\u":
                out.append(chr(int(doc[i + 2 : i + 6], 16)))
                i += 6
            else:
                out.append(json.loads(f'"{esc}"'))
                i += 2
        else:
            out.append(ch)
            i += 1
    return out


def spellings(ch: str) -> list[list[bytes]]:
    """Every spelling of a string character, as a list of allowed byte sets per position."""
    out: list[list[bytes]] = []
    code = ord(ch)
    if ch not in '"\\' and code >= 0x20:
        out.append([bytes([b]) for b in ch.encode()])
    if ch in SHORT:
        out.append([bytes([b]) for b in SHORT[ch]])

    def u(x: int) -> list[bytes]:
        return [b"\\", b"u"] + [
            (d.encode() + d.upper().encode()) if d.isalpha() else d.encode() for d in f"{x:04x}"
        ]

    if code < 0x10000:
        out.append(u(code))
    else:
        hi, lo = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        out.append(u(hi) + u(lo))
    return out


def ref_viable(x: bytes, docs: list[list[object]]) -> bool:
    """Brute force: ``x`` is a prefix of some spelling of some document."""

    def go(i: int, us: list[object], k: int) -> bool:
        if i == len(x):
            return True
        if k == len(us):
            return False
        u = us[k]
        if isinstance(u, int):
            return x[i] == u and go(i + 1, us, k + 1)
        for sp in spellings(u):
            j = 0
            while j < len(sp) and i + j < len(x) and x[i + j] in sp[j]:
                j += 1
            if i + j == len(x) or (j == len(sp) and go(i + j, us, k + 1)):
                return True
        return False

    return any(go(0, us, 0) for us in docs)


def random_spelling(us: list[object], rng: np.random.Generator) -> bytes:
    out = bytearray()
    for u in us:
        if isinstance(u, int):
            out.append(u)
            continue
        sps = spellings(u)
        sp = sps[int(rng.integers(len(sps)))]
        out += b"".join(bytes([s[int(rng.integers(len(s)))]]) for s in sp)
    return bytes(out)


EXTRA = b'\\u"0123456789abcdefABCDEFxyz<k/n \xc3\xa9\xf0\x9f{}:,'


@pytest.mark.parametrize("case", range(len(CASES)))
def test_unfinished_escapes_match_a_brute_force_reference(case):
    schema, values = CASES[case]
    c = pt.json(schema)
    texts = [json.dumps(v, ensure_ascii=False) for v in values]
    for t in texts:
        assert c.complete(list(t.encode())) == 0.0, t  # the listed language is the schema's
    docs = [units(t) for t in texts]
    rng = np.random.default_rng(case)
    spelled = {random_spelling(us, rng) for us in docs for _ in range(12)}
    spelled |= {t.encode() for t in texts}
    prefixes = {s[:k] for s in spelled for k in range(len(s) + 1)}
    queries = sorted(prefixes | {p + bytes([b]) for p in prefixes for b in EXTRA})
    wrong = [q for q in queries if (c.prefix(list(q)) == 0.0) != ref_viable(q, docs)]
    assert not wrong, wrong[:10]
    # the dead ends of the issue are among the queries and are refused
    dead = {
        0: [b'"x\\u004', b'"x<y\\', b'"\\ud83d\\ude1', b'"\\u00f'],
        1: [b'{"k\\u003d', b'{"k<\\', b'{"k<": "\\ud83c'],
        2: [b'{"summar\\u003', b'{"summary\\'],
    }[case]
    for q in dead:
        assert c.prefix(list(q)) == -np.inf and not ref_viable(q, docs), q


def test_pending_chars_ranges():
    """The code points each unfinished escape can still decode to (surrogates excluded)."""
    assert pending_chars(b"\\") == [(0, 0xD7FF), (0xE000, 0x10FFFF)]
    assert pending_chars(b"\\u003") == [(0x30, 0x3F)]
    assert pending_chars(b"\\ud8") == [(0x10000, 0x10000 + (0x100 << 10) - 1)]
    assert pending_chars(b"\\ud") == [(0xD000, 0xD7FF), (0x10000, 0x10FFFF)]
    assert pending_chars(b"\\udc") == []  # lone low surrogates only: refused raw
    assert pending_chars(b"\\ud83d") == [(0x1F400, 0x1F7FF)]
    assert pending_chars(b"\\ud83d\\u") == [(0x1F400, 0x1F7FF)]
    assert pending_chars(b"\\ud83d\\ude0") == [(0x1F600, 0x1F60F)]
    assert pending_chars(b"\\ud83d\\u00") == []  # the high surrogate would stand alone
    for pend, want in ((b"\\u0", range(0x1000)), (b"\\ud83d\\ud", range(0x1F400, 0x1F800))):
        got = {x for a, b in pending_chars(pend) for x in range(a, b + 1)}
        assert got == {x for x in want if not 0xD800 <= x < 0xE000}


def test_a_token_vocab_agrees_with_bytes_at_unfinished_escapes():
    """Masks, single-token checks and states of a lifted constraint equal the byte level.

    The vocabulary spells every byte (as real ones do): the JSON constraint needs that.
    """
    toks = [b'{"', b"summar", b"\\", b"\\u", b"00", b"003", b"0079", b"3", b"7", b"9", b"y"]
    toks += [b'": "', b"ok", b'"}', b"\\u006f", b"k", b'"', b"79", b"0", b"07", b"", b"o"]
    toks += [bytes([b]) for b in range(256) if bytes([b]) not in toks]  # every byte spellable
    vocab = Vocabulary(toks)
    c = pt.json(CASES[2][0])
    lc = c.lift(vocab)
    rng = np.random.default_rng(1)
    ctxs = [[], [0], [0, 1], [0, 1, 2], [0, 1, 3], [0, 1, 5], [0, 1, 3, 4], [0, 1, 3, 18]]
    ctxs += [[0, 1, 3, 4, 8], [0, 1, 3, 8], [0, 1, 3, 6, 11, 12], [0, 1, 10, 11, 14, 15]]
    ctxs += [
        [0, 1, *rng.integers(0, len(toks), size=int(rng.integers(1, 4))).tolist()]
        for _ in range(30)
    ]
    for x in ctxs:
        data = b"".join(toks[t] for t in x)
        lw = lc.logw_next(x)
        state = lc.init_state(1)
        for t in x:
            state = state.advance(np.array([t]))
        single = state.logw_tokens(np.zeros(len(toks) + 1, int), np.arange(len(toks) + 1))
        for t in range(len(toks)):
            want = c.prefix(list(data + toks[t]))
            assert lw[t] == want and single[t] == want, (x, t)
        assert lw[-1] == c.complete(list(data)), x
    assert lc.prefix([0, 1, 5]) == -np.inf  # {"summar\u003: no character fits
    assert lc.prefix([0, 1, 3, 4, 8]) == 0.0  # {"summar\u007: \u0079 is y
    assert lc.prefix([0, 1, 3, 8]) == -np.inf  # {"summar\u7: U+7000..U+7FFF, no y
    assert_potential_laws(lc, ctxs, valid=[[0, 1, 3, 6, 11, 12, 13], [0, 1, 10, 11, 14, 15, 13]])
