r"""A length-aware twist from a constraint's own grammar: how far is the string from done?

Structured output goes wrong in one typical way under SMC: inside a free JSON string almost
every token is allowed, so a particle that keeps writing the string pays nothing, while a
particle that closes it pays for every structural token it writes (``"``, ``, "key": ``).
Resampling then favours the wanderers, and at ``max_tokens`` they all die inside the string.

:class:`CompletionTwist` is a *twist* (:mod:`potentia.smc.engine`): a positive function ψ of
the prefix that only guides resampling and is divided out at EOS, so the target and the
proper weighting do not change, whatever ψ is. Here

.. math::

    \log ψ(x) = -c · n(x) - β · \max(0,\; n(x) - (T - |x|)),

where ``n(x)`` is the number of LM tokens of a short completion of ``x`` (the constraint's
grammar completed greedily, byte by byte, preferring bytes that close the current value,
then split into tokens by :meth:`Vocabulary.greedy_encode`), ``T`` is ``max_tokens``,
``c`` (``per_token``) charges every particle up front for the structure it still has to
write, and ``β`` (``overrun``) penalises particles that can no longer finish within the
budget. ``n(x)`` is a heuristic (an upper bound on the shortest completion, not the
shortest); ψ stays positive everywhere, so no string the target weights is ever excluded.

Cost: per particle and token, one greedy walk of a byte-level copy of the grammar
(tens of microseconds per byte). The walk is a function of the bytes read so far, so it is
memoised by them, once per constraint: the twist and the guard share one byte-level copy
and one memo, and a walk also answers every prefix on its own path (from ``x + g[:k]`` the
greedy walk is ``g[k:]``), which is where particles that close their values go.
"""

from __future__ import annotations

import numpy as np

from potentia.constraints.llg import LLGConstraint
from potentia.potentials.base import Potential, PotentialState, Vocabulary

__all__ = ["BudgetGuard", "CompletionTwist", "greedy_completion"]

#: Bytes tried first when completing a value: close it, then the shortest values.
_PREFER = b'"}]0,:' + b"123456789" + b"ntf-[{ " + bytes(range(ord("a"), ord("z") + 1))
_ORDER = list(_PREFER) + [b for b in range(256) if b not in _PREFER]


def greedy_completion(
    c: LLGConstraint, m: object, aux: object, max_bytes: int = 256, context: bytes = b""
) -> bytes | None:
    """A short byte string that completes the byte-level matcher ``m`` (not mutated).

    Greedy: at each byte the first allowed one in a fixed preference order (closers,
    then the shortest JSON values, then letters, then every other byte), until the grammar
    accepts. ``None`` when no completion of at most ``max_bytes`` bytes was found.

    Args:
        c: A byte-level :class:`LLGConstraint` (its vocabulary is ``Vocabulary.bytes256()``).
        m: One of its matchers (an ``LLGState`` row).
        aux: The row's reading state.
        max_bytes: Give up after this many bytes.
        context: The bytes ``m`` has read (only used to rebuild a matcher if the engine
            hits a resource limit while computing a mask).
    """
    m = m.deep_copy()
    out = bytearray()
    for _ in range(max_bytes + 1):
        if m.is_error():
            return None
        if m.is_accepting():
            return bytes(out)
        if len(out) == max_bytes:
            return None
        bits = c._mask_bits([m], [list(context + out)], [aux])[0]
        for b in _ORDER:
            if bits[b]:
                ok, aux = c._read(m, aux, b, True)
                if not ok:
                    return None
                out.append(b)
                break
        else:
            return None
    return None


def _byte_level(c: LLGConstraint) -> LLGConstraint:
    """``c`` lifted to bytes, once per constraint (the twist and the guard share it)."""
    b = c.__dict__.get("_completion_bytes")
    if b is None:
        b = c.lift(Vocabulary.bytes256())
        c.__dict__["_completion_bytes"] = b
    return b


def _memo_of(bytes_c: LLGConstraint, max_bytes: int) -> dict[bytes, bytes | None]:
    """The greedy completions found so far for ``bytes_c``, by the bytes read."""
    memos = bytes_c.__dict__.setdefault("_completion_memo", {})
    return memos.setdefault(max_bytes, {})


class CompletionTwist(Potential):
    """ψ: how many tokens a prefix still needs, against the tokens left (module docstring).

    Args:
        constraint: The constraint, at the byte level or lifted to ``vocab`` (its byte-level
            version is used to complete prefixes).
        vocab: The LM's vocabulary (the twist's contexts are LM token positions).
        max_tokens: The run's length bound ``T``.
        per_token: ``c``, log-weight charged per token still to write (``> 0``).
        overrun: ``β``, log-weight charged per token beyond the budget (``≥ 0``).
        max_bytes: Longest completion searched for; longer ones count as ``max_bytes``.

    Raises:
        TypeError: if ``constraint`` is not grammar-backed (:class:`LLGConstraint`).
        ValueError: if a number is out of range.
    """

    hard = False

    def __init__(
        self,
        constraint: LLGConstraint,
        vocab: Vocabulary,
        max_tokens: int,
        per_token: float = 1.0,
        overrun: float = 2.0,
        max_bytes: int = 256,
    ) -> None:
        if not isinstance(constraint, LLGConstraint):
            raise TypeError(
                f"`constraint` is {type(constraint).__name__}; CompletionTwist needs a "
                "grammar-backed constraint (pt.json, pt.regex, pt.cfg)."
            )
        if not (isinstance(max_tokens, int) and max_tokens > 0):
            raise ValueError(f"`max_tokens` is {max_tokens!r}; pass a positive int.")
        if not per_token > 0 or not overrun >= 0:
            raise ValueError(
                f"`per_token` ({per_token}) must be > 0 and `overrun` ({overrun}) >= 0."
            )
        self.vocab = vocab
        self.bytes_c = _byte_level(constraint)
        self.max_tokens = max_tokens
        self.per_token = float(per_token)
        self.overrun = float(overrun)
        self.max_bytes = max_bytes
        self._greedy = _memo_of(self.bytes_c, max_bytes)
        self._ntok: dict[bytes, int] = {}

    # one row = (byte matcher or None, reading state, bytes read so far)
    def _start(self) -> tuple:
        return (self.bytes_c._root, self.bytes_c._row_start(), b"")

    def _feed(self, row: tuple, t: int) -> tuple:
        m, aux, seen = row
        if m is None:
            return row
        data = self.vocab.tokens[t]
        if not data:
            return row
        m = m.deep_copy()
        for b in data:
            ok, aux = self.bytes_c._read(m, aux, b, True)
            if not ok or m.is_error():
                return (None, aux, b"")
        return (m, aux, seen + data)

    def _completion(self, row: tuple) -> bytes | None:
        """The greedy completion of ``row`` (``None``: none within ``max_bytes``), memoised."""
        m, aux, seen = row
        if m is None:
            return None
        memo = self._greedy
        if seen in memo:
            return memo[seen]
        done = greedy_completion(self.bytes_c, m, aux, self.max_bytes, seen)
        if len(memo) > 200_000:
            memo.clear()
        memo[seen] = done
        if done:  # the walk from seen + done[:k] is done[k:]: the same greedy choices
            for k in range(1, len(done)):
                memo.setdefault(seen + done[:k], done[k:])
        return done

    def _tokens_of(self, data: bytes) -> int:
        """``len(vocab.greedy_encode(data, skip=True))``, memoised."""
        n = self._ntok.get(data)
        if n is None:
            if len(self._ntok) > 200_000:
                self._ntok.clear()
            n = self._ntok[data] = len(self.vocab.greedy_encode(data, skip=True))
        return n

    def _need(self, row: tuple) -> int:
        """Tokens of the greedy completion of ``row`` (``max_bytes`` if none is found)."""
        if row[0] is None:
            return 0  # the constraint kills this row anyway; the twist stays neutral
        done = self._completion(row)
        return self.max_bytes if done is None else self._tokens_of(done)

    def _logpsi(self, row: tuple, length: int) -> float:
        n = self._need(row)
        left = self.max_tokens - length
        return -self.per_token * n - self.overrun * max(0, n - left)

    def _row(self, context: list[int]) -> tuple:
        row = self._start()
        for t in context:
            row = self._feed(row, t)
        return row

    # ----- the potential contract (prefix only; complete is 1: the twist is divided out) ---
    def _prefix(self, context: list[int]) -> float:
        return self._logpsi(self._row(context), len(context))

    def _complete(self, context: list[int]) -> float:
        return 0.0

    def _logw_next(self, context: list[int]) -> np.ndarray:
        row = self._row(context)
        base = self._logpsi(row, len(context))
        out = np.array(
            [
                self._logpsi(self._feed(row, t), len(context) + 1) - base
                for t in range(len(self.vocab))
            ]
            + [-base]  # complete is 1: EOS weighs complete / prefix
        )
        return out

    def init_state(self, n: int) -> CompletionTwistState:  # noqa: D102
        row = self._start()
        return CompletionTwistState(self, [row] * n, [[] for _ in range(n)])

    def __repr__(self) -> str:
        return (
            f"CompletionTwist(max_tokens={self.max_tokens}, per_token={self.per_token}, "
            f"overrun={self.overrun})"
        )


class CompletionTwistState(PotentialState):
    """Rows of a :class:`CompletionTwist`: a byte-level matcher per row, never mutated."""

    def __init__(self, potential: CompletionTwist, rows: list[tuple], contexts: list[list[int]]):
        self.potential = potential
        self.rows = rows
        self._contexts = contexts
        self._fed: dict[tuple[int, int], tuple] = {}

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def __len__(self) -> int:
        return len(self.rows)

    def _next_row(self, r: int, t: int) -> tuple:
        key = (r, t)
        row = self._fed.get(key)
        if row is None:
            row = self._fed[key] = self.potential._feed(self.rows[r], t)
        return row

    def prefix(self) -> np.ndarray:  # noqa: D102
        p = self.potential
        return np.array([p._logpsi(row, len(c)) for row, c in zip(self.rows, self._contexts)])

    def complete(self) -> np.ndarray:  # noqa: D102
        return np.zeros(len(self.rows))

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        p = self.potential
        V = len(p.vocab)
        out = []
        for r, t in zip(np.asarray(rows).tolist(), np.asarray(tokens).tolist()):
            n = len(self._contexts[r])
            if t == V:
                out.append(-p._logpsi(self.rows[r], n))
                continue
            new = p._logpsi(self._next_row(r, t), n + 1)
            out.append(new - p._logpsi(self.rows[r], n))
        return np.array(out, dtype=float)

    def logw_next(self) -> np.ndarray:  # noqa: D102
        return np.stack([self.potential._logw_next(c) for c in self._contexts])

    def advance(self, tokens: np.ndarray) -> CompletionTwistState:  # noqa: D102
        tokens = self._row_tokens(tokens)
        V = len(self.potential.vocab)
        rows, ctxs = [], []
        for r, t in enumerate(tokens.tolist()):
            rows.append(self.rows[r] if t == V else self._next_row(r, t))
            ctxs.append(self._contexts[r] + [t])
        return CompletionTwistState(self.potential, rows, ctxs)

    def select(self, rows: np.ndarray) -> CompletionTwistState:  # noqa: D102
        rl = np.asarray(rows, dtype=np.int64).tolist()
        return CompletionTwistState(
            self.potential, [self.rows[r] for r in rl], [list(self._contexts[r]) for r in rl]
        )


class BudgetGuard(CompletionTwist):
    r"""Hard: once the tokens left only just suffice, the value is closed the short way.

    Let ``g(x)`` be the greedy completion of prefix ``x`` (:func:`greedy_completion`),
    ``n(x)`` its length in LM tokens and ``L = T − |x|`` the tokens left. The prefix is
    *tight* when ``n(x) ≥ L``. Next-token weights:

    * not tight (or no completion found within ``max_bytes``): every token has weight 1;
    * tight: token ``a`` has weight 1 iff its bytes are a non-empty prefix ``g(x)[:k]`` of
      the completion and the rest still fits, ``len(greedy_encode(g(x)[k:])) ≤ L − 1``;
    * EOS: weight 1 (the constraint decides whether the string may end).

    Multiplied into a structured constraint it declares a *restriction of the target*:
    strings of at most ``T`` tokens (the run's ``max_tokens``) whose tight prefixes go on
    by their greedy completion. Strings that never reach a tight prefix — all that finish
    with room to spare — are untouched; a particle that would otherwise still be inside a
    string at ``max_tokens`` (and die) closes its value instead. The weights stay proper
    for the declared target, which tests compute exactly by enumeration like any other.

    Args:
        constraint: The structured constraint (byte level or lifted to ``vocab``).
        vocab: The LM's vocabulary.
        max_tokens: ``T``.
        max_bytes: Longest completion searched for.
    """

    hard = True

    def __init__(
        self,
        constraint: LLGConstraint,
        vocab: Vocabulary,
        max_tokens: int,
        max_bytes: int = 256,
    ) -> None:
        super().__init__(constraint, vocab, max_tokens, max_bytes=max_bytes)
        self._sets: dict[tuple[bytes, int], frozenset[int]] = {}

    def row(self, context: list[int]) -> tuple:
        """The guard's row (byte-level matcher, escape state, bytes read) after ``context``."""
        return self._row(context)

    def shortest(self, row: tuple) -> int | None:
        """Tokens of the greedy completion of ``row``; ``None`` where none was found."""
        g = self._completion(row)
        return None if g is None else self._tokens_of(g)

    def tight(self, row: tuple, length: int) -> bool:
        """Whether a prefix of ``length`` tokens in ``row`` is tight: ``n(x) ≥ T − |x|``."""
        n = self.shortest(row)
        return n is not None and n >= self.max_tokens - length

    def allowed_next(self, row: tuple, length: int) -> frozenset[int] | None:
        """Tokens allowed after a prefix of ``length`` tokens in ``row`` (``None``: all)."""
        if not self.tight(row, length):
            return None
        g, left = self._completion(row), self.max_tokens - length
        key = (g, left)
        out = self._sets.get(key)
        if out is None:
            index, out = self.vocab.index, set()
            for k in range(1, len(g) + 1):
                t = index.get(g[:k])
                if t is not None and self._tokens_of(g[k:]) <= left - 1:
                    out.add(t)
            if len(self._sets) > 100_000:
                self._sets.clear()
            self._sets[key] = out = frozenset(out)
        return out

    def _prefix(self, context: list[int]) -> float:
        row = self._start()
        for i, t in enumerate(context):
            allowed = self.allowed_next(row, i)
            if allowed is not None and t not in allowed:
                return -np.inf
            row = self._feed(row, t)
        return 0.0

    def _complete(self, context: list[int]) -> float:
        return self._prefix(context)

    def _logw_next(self, context: list[int]) -> np.ndarray:
        V = len(self.vocab)
        if self._prefix(context) == -np.inf:
            return np.full(V + 1, -np.inf)
        allowed = self.allowed_next(self._row(context), len(context))
        out = np.zeros(V + 1)
        if allowed is not None:
            out[:V] = -np.inf
            out[list(allowed)] = 0.0
        return out

    def init_state(self, n: int) -> BudgetGuardState:  # noqa: D102
        row = self._start()
        return BudgetGuardState(self, [row] * n, [[] for _ in range(n)], [True] * n)

    def __repr__(self) -> str:
        return f"BudgetGuard(max_tokens={self.max_tokens})"


class BudgetGuardState(PotentialState):
    """Rows of a :class:`BudgetGuard` (a byte-level matcher per row, never mutated)."""

    def __init__(
        self, potential: BudgetGuard, rows: list[tuple], contexts: list[list[int]], ok: list[bool]
    ):
        self.potential = potential
        self.rows = rows
        self._contexts = contexts
        self._ok = ok
        self._sets: list[object] = [False] * len(rows)  # False: not computed yet

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def __len__(self) -> int:
        return len(self.rows)

    def _set(self, r: int) -> frozenset[int] | None:
        s = self._sets[r]
        if s is False:
            s = self._sets[r] = self.potential.allowed_next(self.rows[r], len(self._contexts[r]))
        return s

    def allowed(self) -> np.ndarray:  # noqa: D102
        V = len(self.potential.vocab)
        out = np.ones((len(self.rows), V + 1), dtype=bool)
        for r in range(len(self.rows)):
            if not self._ok[r]:
                out[r] = False
                continue
            s = self._set(r)
            if s is not None:
                out[r, :V] = False
                out[r, list(s)] = True
        return out

    def logw_next(self) -> np.ndarray:  # noqa: D102
        return np.where(self.allowed(), 0.0, -np.inf)

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        V = len(self.potential.vocab)
        out = []
        for r, t in zip(np.asarray(rows).tolist(), np.asarray(tokens).tolist()):
            if not self._ok[r]:
                out.append(-np.inf)
            elif t == V:
                out.append(0.0)
            else:
                s = self._set(r)
                out.append(0.0 if s is None or t in s else -np.inf)
        return np.array(out, dtype=float)

    def maximal(self) -> np.ndarray:  # noqa: D102
        return np.zeros(len(self.rows), dtype=bool)

    def prefix(self) -> np.ndarray:  # noqa: D102
        return np.where(self._ok, 0.0, -np.inf)

    def complete(self) -> np.ndarray:  # noqa: D102
        return self.prefix()

    def advance(self, tokens: np.ndarray) -> BudgetGuardState:  # noqa: D102
        tokens = self._row_tokens(tokens)
        p = self.potential
        V = len(p.vocab)
        rows, ctxs, ok = [], [], []
        for r, t in enumerate(tokens.tolist()):
            good = self._ok[r] and (t == V or (self._set(r) is None or t in self._set(r)))
            rows.append(self.rows[r] if t == V or not good else p._feed(self.rows[r], t))
            ctxs.append(self._contexts[r] + [t])
            ok.append(good)
        return BudgetGuardState(p, rows, ctxs, ok)

    def select(self, rows: np.ndarray) -> BudgetGuardState:  # noqa: D102
        rl = np.asarray(rows, dtype=np.int64).tolist()
        out = BudgetGuardState(
            self.potential,
            [self.rows[r] for r in rl],
            [list(self._contexts[r]) for r in rl],
            [self._ok[r] for r in rl],
        )
        out._sets = [self._sets[r] for r in rl]
        return out
