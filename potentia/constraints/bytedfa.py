"""Byte automata with a 0/1 cost per transition: the engine behind the lexical constraints.

A :class:`ByteDFA` reads bytes from state 0. ``delta[s, b]`` is the next state (``-1``:
dead), ``cost[s, b]`` ∈ {0, 1} what the transition adds to a counter (characters, words,
bytes), and ``accept[s]`` whether a string may end in ``s``. :meth:`ByteDFA.trimmed` computes
``dist[s]``, the least cost from ``s`` to an accepting state, and removes every transition
into a state that cannot reach one. With that, "is this prefix viable under a budget" is the
exact test ``used + dist[s] <= budget``.

Constructions (all return untrimmed automata):

* :func:`utf8_dfa` — valid UTF-8 (8 states: boundary and the 7 partial-character states);
* :func:`char_class_dfa` — an automaton over *characters*, given by the class of each
  character, compiled to bytes (the character's class is known when its last byte arrives);
* :func:`aho_corasick` — the Aho–Corasick automaton of a set of byte strings;
* :func:`suffix_automaton` — all substrings of a byte string;
* :meth:`ByteDFA.product` — the intersection of two automata (costs add).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from potentia.constraints._jit import njit

__all__ = [
    "ByteDFA",
    "INF",
    "utf8_dfa",
    "utf8_trimmed",
    "char_class_dfa",
    "aho_corasick",
    "suffix_automaton",
    "nonascii_whitespace",
]

#: Distance of a state that cannot reach acceptance (large, but safe to add to).
INF = np.int64(1) << 40


class ByteDFA:
    """A deterministic automaton over bytes with 0/1 transition costs (start state 0).

    Args:
        delta: ``int32[S, 256]`` next states, ``-1`` for dead.
        accept: ``bool[S]`` accepting states.
        cost: ``uint8[S, 256]`` transition costs in {0, 1} (default all 0).
    """

    def __init__(
        self, delta: np.ndarray, accept: np.ndarray, cost: np.ndarray | None = None
    ) -> None:
        self.delta = np.ascontiguousarray(delta, dtype=np.int32)
        S = self.delta.shape[0]
        if self.delta.shape != (S, 256) or S == 0:
            raise ValueError(f"`delta` has shape {self.delta.shape}; expected (S, 256), S >= 1.")
        self.accept = np.ascontiguousarray(accept, dtype=np.bool_)
        self.cost = (
            np.zeros((S, 256), dtype=np.uint8)
            if cost is None
            else np.ascontiguousarray(cost, dtype=np.uint8)
        )
        self.dist: np.ndarray | None = None

    @property
    def n_states(self) -> int:
        """Number of states."""
        return self.delta.shape[0]

    def with_cost(self, cost: np.ndarray) -> ByteDFA:
        """The same automaton with another cost table."""
        return ByteDFA(self.delta, self.accept, cost)

    def product(self, other: ByteDFA, max_states: int = 1 << 20) -> ByteDFA:
        """The intersection automaton (reachable pairs only); costs add (must stay ≤ 1).

        Raises:
            ValueError: past ``max_states`` states, or if both factors count on one byte.
        """
        ids = {(0, 0): 0}
        pairs = [(0, 0)]
        rows_d, rows_c = [], []
        i = 0
        while i < len(pairs):
            a, b = pairs[i]
            da, db = self.delta[a], other.delta[b]
            ok = (da >= 0) & (db >= 0)
            c = self.cost[a].astype(np.int64) + other.cost[b]
            if (c[ok] > 1).any():
                raise ValueError(
                    "both factors of a product count the same byte; costs must be 0/1."
                )
            row = np.full(256, -1, dtype=np.int32)
            for byte in np.flatnonzero(ok):
                key = (int(da[byte]), int(db[byte]))
                j = ids.get(key)
                if j is None:
                    j = ids[key] = len(pairs)
                    pairs.append(key)
                    if len(pairs) > max_states:
                        raise ValueError(
                            f"the automaton exceeds {max_states} states; use fewer or shorter "
                            "terms, or drop the length budget."
                        )
                row[byte] = j
            rows_d.append(row)
            rows_c.append(np.where(ok, c, 0).astype(np.uint8))
            i += 1
        acc = np.array([self.accept[a] and other.accept[b] for a, b in pairs], dtype=np.bool_)
        return ByteDFA(np.stack(rows_d), acc, np.stack(rows_c))

    def trimmed(self) -> ByteDFA:
        """A copy with ``dist`` computed and every transition into a dead end removed."""
        dist = _dist_to_accept(self.delta, self.cost, self.accept)
        delta = self.delta.copy()
        tgt = np.where(delta >= 0, delta, 0)
        delta[(delta >= 0) & (dist[tgt] >= INF)] = -1
        out = ByteDFA(delta, self.accept, np.where(delta >= 0, self.cost, 0))
        out.dist = dist
        return out

    def walk(self, data: bytes, state: int = 0) -> tuple[int, int]:
        """Run ``data`` from ``state``: ``(final state or -1, total cost)``."""
        used = 0
        for b in data:
            if state < 0:
                break
            used += int(self.cost[state, b])
            state = int(self.delta[state, b])
        return state, used


def _dist_to_accept(delta: np.ndarray, cost: np.ndarray, accept: np.ndarray) -> np.ndarray:
    S = delta.shape[0]
    flat = delta.ravel()
    keep = np.flatnonzero(flat >= 0)
    tgt = flat[keep].astype(np.int64)
    order = np.argsort(tgt, kind="stable")
    src = (keep // 256)[order].astype(np.int64)
    w = cost.ravel()[keep][order].astype(np.int64)
    ptr = np.zeros(S + 1, dtype=np.int64)
    np.add.at(ptr, tgt + 1, 1)
    return _bfs01(np.cumsum(ptr), src, w, accept)


@njit(cache=True)
def _bfs01(ptr, src, w, accept):  # pragma: no cover - compiled
    """0-1 BFS from the accepting states over reversed edges (a deque in a ring buffer)."""
    S = accept.shape[0]
    inf = np.int64(1) << 40
    dist = np.full(S, inf, dtype=np.int64)
    cap = src.shape[0] + S + 1
    ring = np.empty(cap, dtype=np.int64)
    head, tail = 0, 0
    for s in range(S):
        if accept[s]:
            dist[s] = 0
            ring[tail] = s
            tail = (tail + 1) % cap
    while head != tail:
        t = ring[head]
        head = (head + 1) % cap
        for e in range(ptr[t], ptr[t + 1]):
            s = src[e]
            nd = dist[t] + w[e]
            if nd < dist[s]:
                dist[s] = nd
                if w[e] == 0:
                    head = (head - 1) % cap
                    ring[head] = s
                else:
                    ring[tail] = s
                    tail = (tail + 1) % cap
    return dist


# ----- UTF-8 -----------------------------------------------------------------------------
def _utf8_table() -> np.ndarray:
    d = np.full((8, 256), -1, dtype=np.int32)
    d[0, 0x00:0x80] = 0
    d[0, 0xC2:0xE0] = 1
    d[0, 0xE0] = 3
    d[0, 0xE1:0xED] = 2
    d[0, 0xED] = 4
    d[0, 0xEE:0xF0] = 2
    d[0, 0xF0] = 6
    d[0, 0xF1:0xF4] = 5
    d[0, 0xF4] = 7
    d[1, 0x80:0xC0] = 0
    d[2, 0x80:0xC0] = 1
    d[3, 0xA0:0xC0] = 1
    d[4, 0x80:0xA0] = 1
    d[5, 0x80:0xC0] = 2
    d[6, 0x90:0xC0] = 2
    d[7, 0x80:0x90] = 2
    return d


UTF8 = _utf8_table()


@functools.cache
def utf8_trimmed() -> ByteDFA:
    """``utf8_dfa().trimmed()``, built once, at first use (trimming runs a numba kernel)."""
    return utf8_dfa().trimmed()


def utf8_dfa(count: str | None = None) -> ByteDFA:
    """Valid UTF-8; ``count="chars"`` costs 1 per character (on its first byte), ``"bytes"`` 1 per byte."""
    cost = np.zeros((8, 256), dtype=np.uint8)
    if count == "chars":
        cost[0, :] = 1
    elif count == "bytes":
        cost[:, :] = 1
    cost[UTF8 < 0] = 0
    return ByteDFA(UTF8, np.arange(8) == 0, cost)


_NONASCII_WS: str | None = None


def nonascii_whitespace() -> str:
    """Every non-ASCII character for which ``str.isspace`` holds (what ``str.split`` splits on)."""
    global _NONASCII_WS
    if _NONASCII_WS is None:
        _NONASCII_WS = "".join(c for c in map(chr, range(0x80, 0x110000)) if c.isspace())
    return _NONASCII_WS


def char_class_dfa(
    ascii_class: Sequence[int],
    special: Mapping[str, int],
    default_class: int,
    cdelta: np.ndarray,
    ccost: np.ndarray,
    caccept: np.ndarray,
) -> ByteDFA:
    """Compile an automaton over character classes to valid-UTF-8 bytes.

    Args:
        ascii_class: Class of each ASCII character (128 entries).
        special: Class of some non-ASCII characters.
        default_class: Class of every other non-ASCII character.
        cdelta: ``int[Q, C]`` next character state by class (``-1`` dead).
        ccost: ``int[Q, C]`` cost of reading a character of each class (0/1).
        caccept: ``bool[Q]`` accepting character states.

    Returns:
        The byte automaton: state ``q * P + p`` is character state ``q`` with partial
        character ``p`` (0: none, 1–7: a generic UTF-8 partial, 8+: a prefix of a special
        character's encoding). The cost of a character is paid on its last byte.
    """
    # trie over the encodings of the special characters (root = boundary = partial 0)
    nodes: dict[bytes, int] = {b"": 0}
    leaf_class: dict[bytes, int] = {}
    for ch, cls in special.items():
        enc = ch.encode("utf-8")
        if len(ch) != 1 or len(enc) < 2:
            raise ValueError(f"`special` key {ch!r} must be one non-ASCII character.")
        leaf_class[enc] = cls
        for k in range(1, len(enc)):
            nodes.setdefault(enc[:k], 8 + len(nodes) - 1)
    P = 8 + len(nodes) - 1
    DEAD = -1

    def char_done(cls: int) -> int:
        return -2 - cls

    ptrans = np.full((P, 256), DEAD, dtype=np.int64)
    for prefix, p in nodes.items():
        for b in range(256):
            s = prefix + bytes([b])
            if not prefix and b < 0x80:
                ptrans[p, b] = char_done(int(ascii_class[b]))
            elif s in leaf_class:
                ptrans[p, b] = char_done(leaf_class[s])
            elif s in nodes:
                ptrans[p, b] = nodes[s]
            else:
                u = 0
                for x in s:
                    u = UTF8[u, x]
                    if u < 0:
                        break
                ptrans[p, b] = DEAD if u < 0 else (char_done(default_class) if u == 0 else u)
    for u in range(1, 8):
        for b in range(256):
            v = UTF8[u, b]
            ptrans[u, b] = DEAD if v < 0 else (char_done(default_class) if v == 0 else v)
    cdelta = np.asarray(cdelta, dtype=np.int64)
    ccost = np.asarray(ccost, dtype=np.int64)
    Q = cdelta.shape[0]
    delta = np.full((Q * P, 256), -1, dtype=np.int32)
    cost = np.zeros((Q * P, 256), dtype=np.uint8)
    for q in range(Q):
        for p in range(P):
            r = ptrans[p]
            partial = r >= 0
            delta[q * P + p, partial] = q * P + r[partial]
            done = r <= -2
            cls = -2 - r[done]
            nq = cdelta[q, cls]
            delta[q * P + p, done] = np.where(nq >= 0, nq * P, -1)
            cost[q * P + p, done] = np.where(nq >= 0, ccost[q, cls], 0)
    accept = np.zeros(Q * P, dtype=np.bool_)
    accept[np.arange(Q) * P] = np.asarray(caccept, dtype=np.bool_)
    return ByteDFA(delta, accept, cost)


# ----- string automata -------------------------------------------------------------------
def aho_corasick(
    patterns: Sequence[bytes], labels: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The Aho–Corasick automaton of ``patterns`` (non-empty byte strings).

    Args:
        patterns: The strings to find.
        labels: Bit (0..62) set when each pattern is found (default: its position).

    Returns:
        ``(goto, out)``: ``goto[s, b]`` is the next trie node (a total function) and
        ``out[s]`` the bitmask of labels of the patterns that end at ``s`` (through suffix
        links too).
    """
    labels = list(range(len(patterns))) if labels is None else list(labels)
    if labels and max(labels) > 62:
        raise ValueError(f"label {max(labels)} is too large; at most 63 labels are supported.")
    children: list[dict[int, int]] = [{}]
    out = [0]
    for i, pat in enumerate(patterns):
        s = 0
        for b in pat:
            nxt = children[s].get(b)
            if nxt is None:
                nxt = len(children)
                children[s][b] = nxt
                children.append({})
                out.append(0)
            s = nxt
        out[s] |= 1 << labels[i]
    n = len(children)
    goto = np.zeros((n, 256), dtype=np.int32)
    fail = [0] * n
    queue = deque()
    for b, c in children[0].items():
        goto[0, b] = c
        queue.append(c)
    while queue:
        s = queue.popleft()
        out[s] |= out[fail[s]]
        goto[s] = goto[fail[s]]
        for b, c in children[s].items():
            goto[s, b] = c
            fail[c] = int(goto[fail[s], b])
            queue.append(c)
    return goto, np.array(out, dtype=np.uint64)


def suffix_automaton(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The suffix automaton of ``text``: a string is a substring iff it has a path from 0.

    Returns:
        ``(delta, endpos)``: ``int32[S, 256]`` transitions (``-1`` none) and, per state, one
        end position (index of the last byte) of its strings in ``text`` (``-1`` at the root).
    """
    nxt: list[dict[int, int]] = [{}]
    link, length, endpos = [-1], [0], [-1]
    last = 0
    for i, b in enumerate(text):
        cur = len(nxt)
        nxt.append({})
        link.append(0)
        length.append(length[last] + 1)
        endpos.append(i)
        p = last
        while p != -1 and b not in nxt[p]:
            nxt[p][b] = cur
            p = link[p]
        if p != -1:
            q = nxt[p][b]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(nxt)
                nxt.append(dict(nxt[q]))
                link.append(link[q])
                length.append(length[p] + 1)
                endpos.append(endpos[q])
                while p != -1 and nxt[p].get(b) == q:
                    nxt[p][b] = clone
                    p = link[p]
                link[q] = link[cur] = clone
        last = cur
    delta = np.full((len(nxt), 256), -1, dtype=np.int32)
    for s, row in enumerate(nxt):
        if row:
            keys = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            delta[s, keys] = np.fromiter(row.values(), dtype=np.int32, count=len(row))
    return delta, np.array(endpos, dtype=np.int64)
