"""A Python function on the decoded text as a hard or soft potential.

``predicate(fn, level=..., soft=...)`` calls ``fn(text)`` on the text decoded so far.

Text. The potential is defined on bytes; ``fn`` only ever sees text made of *complete*
characters. A prefix that ends inside a multi-byte character is judged on the text before
that character (the partial tail is held back until its last byte arrives), so tokens
that split a character are handled exactly. Bytes that can never become valid UTF-8 get
weight zero, and a finished string must be valid UTF-8.

Weights. A hard predicate (``soft=False``) returns a ``bool``: ``True`` is weight 1, ``False``
weight 0. A soft predicate (``soft=True``) returns a **log** weight: a float in
``[-inf, inf)``, ``-inf`` for weight zero (return ``math.log(w)`` for a weight ``w >= 0``).

Levels. Write P(x) for the texts of x's prefixes that end at character boundaries (the
empty text and the full text included).

* ``"complete"``: ``fn`` judges the finished text only; every prefix has weight 1.
* ``"prefix"``: ``fn`` judges every text in P(x); a prefix's weight is ``fn`` of its text
  and drops to 0 for good once some text in P(x) got weight 0. A finished string has weight
  1 if none did. Hard: the language of strings all of whose prefixes pass (a prefix-closed
  property such as "no line longer than 80 characters"). Soft: ``fn`` only guides sampling;
  the target is changed by its zeros alone.
* ``"both"``: as ``"prefix"`` on prefixes, and the finished string's weight is ``fn`` of its
  text. Soft: ``fn`` guides prefixes *and* weights the finished text. Hard: the same
  language as ``"prefix"`` (the finished text is its own last prefix).

``fn("")`` is called when the potential is built, so a function that cannot judge the
empty text fails early; at ``"prefix"``/``"both"`` a zero weight there means the language is
empty and is refused. An exception raised by ``fn`` later is re-raised as
:class:`PredicateError` showing the text it failed on.

Cost. A single-token check makes at most one call per character the token completes
(O(len(token))), which is what rejection samplers (AWRS) use. A full next-token vector
at ``"prefix"``/``"both"`` cannot avoid Python: it makes one call per distinct text reached by
the tokens (a walk over the vocabulary's trie, O(V) calls — about a second on a
262k-token vocabulary). At ``"complete"`` the vector is a compiled UTF-8 mask plus one call
for EOS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from potentia.constraints.automaton import AutomatonPotential, vocab_tables
from potentia.constraints.bytedfa import UTF8, utf8_trimmed
from potentia.potentials.base import Potential, PotentialState, Vocabulary

__all__ = ["predicate", "PredicatePotential", "PredicateState", "PredicateError", "LEVELS"]

LEVELS = ("complete", "prefix", "both")


class PredicateError(RuntimeError):
    """``fn`` raised, or returned something that is not a weight, while sampling."""


class _Row(NamedTuple):
    """Decoding state of one context: UTF-8 state, pending bytes, text, log weight."""

    alive: bool
    u: int
    pend: bytes
    text: str
    w: float


_DEAD = _Row(False, 0, b"", "", -math.inf)


def predicate(
    fn: Callable[[str], Any], level: str = "complete", soft: bool = False
) -> PredicatePotential:
    """A potential from a Python function on the decoded text (see the module docstring).

    Args:
        fn: ``fn(text)`` returns a ``bool`` (hard) or a log weight (``soft=True``).
        level: ``"complete"``, ``"prefix"`` or ``"both"``: where ``fn`` is applied.
        soft: Whether ``fn`` returns log weights instead of booleans.

    Returns:
        A byte-level potential; ``.lift(vocab)`` gives it over any token vocabulary.

    Raises:
        TypeError: if ``fn`` is not callable or returns the wrong type on ``""``.
        ValueError: on an unknown ``level``, if ``fn("")`` raises, or if ``fn("")`` is a
            zero weight at ``"prefix"``/``"both"`` (no string could pass).
    """
    return PredicatePotential(fn, level, soft, Vocabulary.bytes256())


class PredicatePotential(Potential):
    """``predicate(fn)`` over a vocabulary (build it with :func:`predicate`).

    Args:
        fn: The function on text.
        level: ``"complete"``, ``"prefix"`` or ``"both"``.
        soft: Whether ``fn`` returns log weights.
        vocab: The token vocabulary.
    """

    def __init__(self, fn: Callable[[str], Any], level: str, soft: bool, vocab: Vocabulary) -> None:
        if not callable(fn):
            raise TypeError(
                f"`fn` is {fn!r}; pass a function of the text, e.g. lambda s: 'x' in s."
            )
        if level not in LEVELS:
            raise ValueError(f"`level` is {level!r}; choose one of {LEVELS}.")
        if not isinstance(soft, bool):
            raise TypeError(f"`soft` is {soft!r}; pass True or False.")
        self.fn, self.level, self.soft, self.vocab = fn, level, soft, vocab
        self.hard = not soft
        self.name = getattr(fn, "__name__", type(fn).__name__)
        try:
            w0 = self.weight("")
        except PredicateError as exc:
            if exc.__cause__ is None:  # fn returned something that is not a weight
                raise TypeError(str(exc)) from None
            raise ValueError(
                f"`fn` cannot judge the empty text: {exc.__cause__ or exc}. Make `fn` return "
                f"{'-inf' if soft else 'False'} (or a weight) for texts it cannot judge."
            ) from exc
        if level != "complete" and w0 == -math.inf:
            raise ValueError(
                f"`fn` gives the empty text weight zero at level={level!r}, so every string "
                "has a zero-weight prefix and the language is empty. Use level='complete'."
            )
        self._root = _Row(True, 0, b"", "", w0 if level != "complete" else 0.0)
        self._utf8 = AutomatonPotential(utf8_trimmed(), vocab, label="utf8")

    # ----- calling fn -------------------------------------------------------------------
    def weight(self, text: str) -> float:
        """``fn(text)`` as a log weight (checked); errors name the text."""
        try:
            r = self.fn(text)
        except Exception as exc:
            raise PredicateError(
                f"predicate `{self.name}` raised {type(exc).__name__}: {exc} on the text "
                f"{_show(text)}"
            ) from exc
        if not self.soft:
            if not isinstance(r, bool | np.bool_):
                raise PredicateError(
                    f"predicate `{self.name}` returned {r!r} ({type(r).__name__}) on the text "
                    f"{_show(text)}; a hard predicate returns a bool (use soft=True for weights)."
                )
            return 0.0 if r else -math.inf
        if isinstance(r, bool | np.bool_) or not isinstance(
            r, int | float | np.integer | np.floating
        ):
            raise PredicateError(
                f"predicate `{self.name}` returned {r!r} ({type(r).__name__}) on the text "
                f"{_show(text)}; a soft predicate returns a log weight (a float)."
            )
        r = float(r)
        if math.isnan(r) or r == math.inf:
            raise PredicateError(
                f"predicate `{self.name}` returned {r} on the text {_show(text)}; log weights "
                "lie in [-inf, inf) (return -inf for weight zero)."
            )
        return r

    # ----- incremental decoding ---------------------------------------------------------
    def step(self, row: _Row, data: bytes) -> _Row:
        """The row after reading ``data`` (calls ``fn`` once per completed character)."""
        if not row.alive:
            return row
        alive, u, pend, text, w = row
        judge = self.level != "complete"
        for b in data:
            u = int(UTF8[u, b])
            if u < 0:
                return _DEAD
            pend += bytes((b,))
            if u == 0:
                text += pend.decode("utf-8")
                pend = b""
                if judge:
                    w = self.weight(text)
                    if w == -math.inf:
                        return _DEAD
        return _Row(True, u, pend, text, w)

    def row_prefix(self, row: _Row) -> float:
        """log prefix weight of a row."""
        return row.w if row.alive else -math.inf

    def row_complete(self, row: _Row) -> float:
        """log complete weight of a row."""
        if not row.alive or row.u != 0:
            return -math.inf
        if self.level == "complete":
            return self.weight(row.text)
        return 0.0 if self.level == "prefix" else row.w

    # ----- context API ------------------------------------------------------------------
    def _row(self, context: list[int]) -> _Row:
        return self.step(self._root, self.vocab.decode_bytes(context))

    def _prefix(self, context: list[int]) -> float:
        return self.row_prefix(self._row(context))

    def _complete(self, context: list[int]) -> float:
        return self.row_complete(self._row(context))

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self.row_logw_next(self._row(context))

    def row_logw_next(self, row: _Row) -> np.ndarray:
        """The next-token log weights of one row (O(V) calls of ``fn`` unless ``"complete"``)."""
        V = len(self.vocab)
        out = np.full(V + 1, -np.inf)
        if not row.alive:
            return out
        base = row.w
        if self.level == "complete":
            out[:V] = self._utf8.logw_row(row.u, 0)
        else:
            self._walk_trie(row, out)
        out[V] = self.row_complete(row) - base
        return out

    def _walk_trie(self, row: _Row, out: np.ndarray) -> None:
        """Every token's weight by one preorder pass over the vocabulary trie."""
        t = vocab_tables(self.vocab)
        rows: list[_Row] = [row] * (t.max_len + 1)
        ptr, ids, depth, byte, end = t.tok_ptr, t.tok_ids, t.node_depth, t.node_byte, t.subtree_end
        base = row.w
        out[ids[ptr[0] : ptr[1]]] = 0.0
        i, n = 1, t.n_nodes
        while i < n:
            d = int(depth[i])
            r = self.step(rows[d - 1], bytes((int(byte[i]),)))
            if not r.alive:
                i = int(end[i])
                continue
            rows[d] = r
            if ptr[i + 1] > ptr[i]:
                out[ids[ptr[i] : ptr[i + 1]]] = r.w - base
            i += 1

    def init_state(self, n: int) -> PredicateState:  # noqa: D102
        return PredicateState(self, [[] for _ in range(n)], [self._root] * n)

    def lift(self, vocab: Vocabulary) -> PredicatePotential:
        """The same predicate over the tokens of ``vocab``."""
        return PredicatePotential(self.fn, self.level, self.soft, vocab)

    def __repr__(self) -> str:
        return f"predicate({self.name}, level={self.level!r}, soft={self.soft})"


def _show(text: str, limit: int = 200) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


class PredicateState(PotentialState):
    """Decoded rows of a batch; single-token answers are memoised for :meth:`advance`."""

    def __init__(self, potential: PredicatePotential, contexts: list[list[int]], rows: list[_Row]):
        self.potential = potential
        self._contexts, self.rows = contexts, rows
        self._memo: dict[tuple[int, int], _Row] = {}

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def _next(self, r: int, token: int) -> _Row:
        key = (r, token)
        nxt = self._memo.get(key)
        if nxt is None:
            p = self.potential
            nxt = self._memo[key] = p.step(self.rows[r], p.vocab.tokens[token])
        return nxt

    def prefix(self) -> np.ndarray:  # noqa: D102
        return np.array([self.potential.row_prefix(r) for r in self.rows], dtype=float)

    def complete(self) -> np.ndarray:  # noqa: D102
        return np.array([self.potential.row_complete(r) for r in self.rows], dtype=float)

    def logw_next(self) -> np.ndarray:  # noqa: D102
        V = len(self.potential.vocab)
        if not self.rows:
            return np.zeros((0, V + 1))
        return np.stack([self.potential.row_logw_next(r) for r in self.rows])

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        p = self.potential
        V = len(p.vocab)
        out = np.empty(len(tokens))
        for k, (r, a) in enumerate(zip(np.asarray(rows).tolist(), np.asarray(tokens).tolist())):
            row = self.rows[r]
            if not row.alive:
                out[k] = -np.inf
            elif a == V:
                out[k] = p.row_complete(row) - row.w
            else:
                out[k] = p.row_prefix(self._next(r, a)) - row.w
        return out

    def advance(self, tokens: np.ndarray) -> PredicateState:  # noqa: D102
        V = len(self.potential.vocab)
        toks = np.asarray(tokens, dtype=np.int64).tolist()
        if len(toks) != len(self.rows) or any(not 0 <= a < V for a in toks):
            raise ValueError(
                f"`tokens` is {tokens!r}; advance needs one token index in 0..{V - 1} per row "
                f"({len(self.rows)} rows; EOS cannot be advanced)."
            )
        rows = [self._next(r, a) for r, a in enumerate(toks)]
        ctx = [c + [a] for c, a in zip(self._contexts, toks)]
        return PredicateState(self.potential, ctx, rows)

    def select(self, rows: np.ndarray) -> PredicateState:  # noqa: D102
        idx = np.asarray(rows, dtype=np.int64).tolist()
        return PredicateState(
            self.potential, [list(self._contexts[r]) for r in idx], [self.rows[r] for r in idx]
        )
