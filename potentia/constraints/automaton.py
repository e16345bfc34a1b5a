"""A byte automaton with a budget as a hard potential over any token vocabulary.

:class:`AutomatonPotential` accepts a byte string x iff the trimmed :class:`ByteDFA` ends
in an accepting state with ``min_used <= used <= budget``, where ``used`` is the summed
transition cost (plus ``token_cost`` per token, for budgets counted in tokens). A prefix is
viable iff it is alive and ``used + dist <= budget``: exact, because the automaton is
trimmed and ``dist`` is the least cost to acceptance (for token budgets: the least number
of tokens of *this* vocabulary). ``min_used`` is only checked at EOS; the constructions
that use it (lengths) can always pad, so prefixes stay exact.

The same class is the byte-level potential (``Vocabulary.bytes256()``) and every lift
(:meth:`AutomatonPotential.lift`). Per vocabulary, :func:`vocab_tables` builds once:

* the tokens' bytes flattened (``data``, ``offsets``): a single-token check walks
  ``len(token)`` transitions in compiled code (:func:`_check_tokens`);
* a trie of all tokens in preorder (byte, depth, end of subtree, tokens ending there): the
  allowed-token mask from a state is one pass over the trie that skips every subtree whose
  prefix is dead or over budget (:func:`_mask_dfs`); masks are cached per (state,
  remaining budget) as log-weight rows in an LRU bounded in bytes (128 MiB by default),
  so a state seen before costs one copy.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np

from potentia.constraints._jit import njit
from potentia.constraints.bytedfa import INF, ByteDFA
from potentia.potentials.base import Potential, PotentialState, Vocabulary

__all__ = ["AutomatonPotential", "AutomatonState", "VocabTables", "vocab_tables"]

_TABLES: weakref.WeakKeyDictionary[Vocabulary, VocabTables] = weakref.WeakKeyDictionary()
#: Unbounded budget (below :data:`INF`, so unreachable states stay unviable).
NO_BUDGET = np.int64(1) << 36


class VocabTables:
    """Flattened token bytes and a preorder token trie of one vocabulary."""

    def __init__(self, vocab: Vocabulary) -> None:
        toks = vocab.tokens
        lens = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
        self.offsets = np.zeros(len(toks) + 1, dtype=np.int64)
        np.cumsum(lens, out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(toks), dtype=np.uint8).copy()
        self.max_len = int(lens.max()) if len(lens) else 0
        order = np.array(sorted(range(len(toks)), key=toks.__getitem__), dtype=np.int64)
        nb, nd, se, end_node, n = _build_trie(self.data, self.offsets, order, self.max_len)
        self.node_byte, self.node_depth, self.subtree_end = nb[:n], nd[:n], se[:n]
        by_node = np.argsort(end_node, kind="stable")
        self.tok_ids = by_node.astype(np.int64)
        self.tok_ptr = np.searchsorted(end_node[by_node], np.arange(n + 1)).astype(np.int64)
        self.n_nodes = n


def vocab_tables(vocab: Vocabulary) -> VocabTables:
    """The (cached) :class:`VocabTables` of ``vocab``."""
    t = _TABLES.get(vocab)
    if t is None:
        t = _TABLES[vocab] = VocabTables(vocab)
    return t


@njit(cache=True)
def _build_trie(data, offsets, order, max_len):  # pragma: no cover - compiled
    n_max = data.shape[0] + 1
    node_byte = np.zeros(n_max, dtype=np.uint8)
    node_depth = np.zeros(n_max, dtype=np.int32)
    subtree_end = np.zeros(n_max, dtype=np.int64)
    end_node = np.zeros(order.shape[0], dtype=np.int64)
    path = np.zeros(max_len + 1, dtype=np.int64)
    n = 1
    prev, prev_len = -1, 0
    for k in range(order.shape[0]):
        t = order[k]
        s, L = offsets[t], offsets[t + 1] - offsets[t]
        lcp = 0
        if prev >= 0:
            ps = offsets[prev]
            while lcp < L and lcp < prev_len and data[s + lcp] == data[ps + lcp]:
                lcp += 1
        for d in range(lcp + 1, prev_len + 1):
            subtree_end[path[d]] = n
        for d in range(lcp + 1, L + 1):
            node_byte[n] = data[s + d - 1]
            node_depth[n] = d
            path[d] = n
            n += 1
        end_node[t] = path[L] if L > 0 else 0
        prev, prev_len = t, L
    for d in range(1, prev_len + 1):
        subtree_end[path[d]] = n
    subtree_end[0] = n
    return node_byte, node_depth, subtree_end, end_node, n


@njit(cache=True)
def _check_tokens(
    q, used, rows, tokens, data, offsets, delta, cost, dist_end, accept, tcost, budget, min_used
):  # pragma: no cover - compiled
    V = offsets.shape[0] - 1
    out = np.empty(rows.shape[0], dtype=np.float64)
    for k in range(rows.shape[0]):
        r = rows[k]
        s = q[r]
        u = used[r]
        t = tokens[k]
        out[k] = -np.inf
        if s < 0 or u + dist_end[s] > budget:
            continue
        if t == V:
            if accept[s] and u >= min_used:
                out[k] = 0.0
            continue
        for i in range(offsets[t], offsets[t + 1]):
            b = data[i]
            u += cost[s, b]
            s = delta[s, b]
            if s < 0:
                break
        if s >= 0 and u + tcost + dist_end[s] <= budget:
            out[k] = 0.0
    return out


@njit(cache=True)
def _advance(q, used, tokens, data, offsets, delta, cost, tcost):  # pragma: no cover
    nq = np.empty_like(q)
    nu = np.empty_like(used)
    for r in range(q.shape[0]):
        s, u, t = q[r], used[r] + tcost, tokens[r]
        for i in range(offsets[t], offsets[t + 1]):
            if s < 0:
                break
            b = data[i]
            u += cost[s, b]
            s = delta[s, b]
        nq[r], nu[r] = s, u
    return nq, nu


@njit(cache=True)
def _mask_dfs(
    s0,
    rem,
    delta,
    cost,
    dist_prune,
    dist_end,
    tcost,
    node_byte,
    node_depth,
    subtree_end,
    tok_ptr,
    tok_ids,
    max_len,
    out,
):  # pragma: no cover - compiled
    sq = np.empty(max_len + 1, dtype=np.int64)
    sc = np.empty(max_len + 1, dtype=np.int64)
    sq[0], sc[0] = s0, 0
    if tcost + dist_end[s0] <= rem:
        for k in range(tok_ptr[0], tok_ptr[1]):
            out[tok_ids[k]] = 0.0
    n = node_byte.shape[0]
    i = 1
    while i < n:
        d = node_depth[i]
        p = sq[d - 1]
        b = node_byte[i]
        s = delta[p, b]
        if s < 0:
            i = subtree_end[i]
            continue
        c = sc[d - 1] + cost[p, b]
        if c + dist_prune[s] > rem:
            i = subtree_end[i]
            continue
        sq[d], sc[d] = s, c
        if c + tcost + dist_end[s] <= rem:
            for k in range(tok_ptr[i], tok_ptr[i + 1]):
                out[tok_ids[k]] = 0.0
        i += 1


@njit(cache=True)
def _one_token_targets(s0, delta, data, offsets):  # pragma: no cover - compiled
    V = offsets.shape[0] - 1
    out = np.empty(V, dtype=np.int64)
    for t in range(V):
        s = s0
        for i in range(offsets[t], offsets[t + 1]):
            s = delta[s, data[i]]
            if s < 0:
                break
        out[t] = s
    return out


class AutomatonPotential(Potential):
    """A hard potential given by a trimmed byte automaton and a budget (see module doc).

    Args:
        dfa: A trimmed :class:`ByteDFA` (``dfa.dist`` set).
        vocab: The token vocabulary (``Vocabulary.bytes256()`` at the byte level).
        budget: Largest total cost, or ``None`` for no bound.
        min_used: Smallest total cost of a finished string.
        token_cost: Cost added per token (1 for budgets counted in tokens, then the
            automaton's own costs must be 0).
        label: Shown in ``repr`` and error messages.
        cache_bytes: Memory bound of the mask cache.
    """

    hard = True

    def __init__(
        self,
        dfa: ByteDFA,
        vocab: Vocabulary,
        *,
        budget: int | None = None,
        min_used: int = 0,
        token_cost: int = 0,
        label: str = "automaton",
        cache_bytes: int = 128 << 20,
    ) -> None:
        if dfa.dist is None:
            raise ValueError("`dfa` must be trimmed (call `dfa.trimmed()`).")
        self.dfa, self.vocab, self.label = dfa, vocab, label
        self.budget = NO_BUDGET if budget is None else np.int64(budget)
        self.min_used, self.token_cost = int(min_used), int(token_cost)
        self.tables = vocab_tables(vocab)
        if self.token_cost:
            self.dist_end = self._token_dist()
        else:
            self.dist_end = dfa.dist
        if self.dist_end[0] > self.budget:
            raise ValueError(
                f"{label}: no string satisfies the constraint (the shortest accepted string "
                f"costs {int(self.dist_end[0]) if self.dist_end[0] < INF else 'infinity'}, the "
                f"budget is {int(self.budget)}); relax the constraint."
            )
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_max = max(1, cache_bytes // (8 * len(vocab)))
        lim = self.tables.max_len + self.token_cost + int(self.dist_end[self.dist_end < INF].max())
        self._rem_cap = np.int64(lim)

    def _token_dist(self) -> np.ndarray:
        """Least number of tokens from each state to acceptance (Bellman–Ford on one-token moves)."""
        S = self.dfa.n_states
        if S > 4096 or self.dfa.cost.any():
            raise ValueError("token budgets need a small automaton without byte costs.")
        t = self.tables
        succ = [
            np.unique(_one_token_targets(s, self.dfa.delta, t.data, t.offsets)) for s in range(S)
        ]
        succ = [x[x >= 0] for x in succ]
        dist = np.where(self.dfa.accept & (self.dfa.dist < INF), 0, INF).astype(np.int64)
        for _ in range(S):
            new = dist.copy()
            for s in range(S):
                if len(succ[s]):
                    new[s] = min(new[s], 1 + dist[succ[s]].min())
            new = np.minimum(new, INF)
            if (new == dist).all():
                break
            dist = new
        return dist

    def lift(self, vocab: Vocabulary) -> AutomatonPotential:
        """The same byte language over ``vocab`` (budgets in tokens count ``vocab``'s tokens)."""
        return AutomatonPotential(
            self.dfa,
            vocab,
            budget=None if self.budget == NO_BUDGET else int(self.budget),
            min_used=self.min_used,
            token_cost=self.token_cost,
            label=self.label,
        )

    # ----- context API (used by the laws and slow paths) ------------------------------
    def _run(self, context: list[int]) -> tuple[int, int]:
        s, u = self.dfa.walk(self.vocab.decode_bytes(context))
        return s, u + self.token_cost * len(context)

    def _viable(self, s: int, u: int) -> bool:
        return s >= 0 and u + int(self.dist_end[s]) <= self.budget

    def _prefix(self, context: list[int]) -> float:
        s, u = self._run(context)
        return 0.0 if self._viable(s, u) else -np.inf

    def _complete(self, context: list[int]) -> float:
        s, u = self._run(context)
        ok = self._viable(s, u) and self.dfa.accept[s] and u >= self.min_used
        return 0.0 if ok else -np.inf

    def _batch_logw_next(self, contexts: list[list[int]]) -> np.ndarray:
        runs = [self._run(c) for c in contexts]
        q = np.array([r[0] for r in runs], dtype=np.int64)
        u = np.array([r[1] for r in runs], dtype=np.int64)
        return AutomatonState(self, [list(c) for c in contexts], q, u).logw_next()

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self._batch_logw_next([context])[0]

    def init_state(self, n: int) -> AutomatonState:  # noqa: D102
        return AutomatonState(
            self, [[] for _ in range(n)], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        )

    # ----- masks ----------------------------------------------------------------------
    def logw_row(self, s: int, used: int) -> np.ndarray:
        """Log weights (0 or -inf) of every token from automaton state ``s`` with ``used`` spent.

        The row is cached (LRU, bounded in bytes) and must not be modified.
        """
        rem = int(min(self.budget - used, self._rem_cap))
        key = (s, rem)
        row = self._cache.get(key)
        if row is not None:
            self._cache.move_to_end(key)
            return row
        t, d = self.tables, self.dfa
        row = np.full(len(self.vocab), -np.inf)
        _mask_dfs(
            np.int64(s), np.int64(rem), d.delta, d.cost, d.dist, self.dist_end,
            np.int64(self.token_cost), t.node_byte, t.node_depth, t.subtree_end,
            t.tok_ptr, t.tok_ids, t.max_len, row,
        )  # fmt: skip
        row.flags.writeable = False
        self._cache[key] = row
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return row

    def mask(self, s: int, used: int) -> np.ndarray:
        """Boolean mask of the tokens allowed from automaton state ``s`` with ``used`` spent."""
        return self.logw_row(s, used) == 0.0

    def __repr__(self) -> str:
        return f"{self.label}(vocab={len(self.vocab)} tokens)"


class AutomatonState(PotentialState):
    """Rows of automaton states and costs spent; persistent (advance/select return new states)."""

    def __init__(
        self,
        potential: AutomatonPotential,
        contexts: list[list[int]],
        q: np.ndarray,
        used: np.ndarray,
    ) -> None:
        self.potential = potential
        self._contexts, self.q, self.used = contexts, q, used

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def _alive(self) -> np.ndarray:
        p = self.potential
        s = np.maximum(self.q, 0)
        return (self.q >= 0) & (self.used + p.dist_end[s] <= p.budget)

    def prefix(self) -> np.ndarray:  # noqa: D102
        return np.where(self._alive(), 0.0, -np.inf)

    def complete(self) -> np.ndarray:  # noqa: D102
        p = self.potential
        rows = np.arange(len(self.q), dtype=np.int64)
        return self.logw_tokens(rows, np.full(len(rows), len(p.vocab), dtype=np.int64))

    def logw_next(self) -> np.ndarray:  # noqa: D102
        p = self.potential
        V = len(p.vocab)
        out = np.empty((len(self.q), V + 1))
        alive = self._alive()
        out[~alive, :V] = -np.inf
        for r in np.flatnonzero(alive):
            out[r, :V] = p.logw_row(int(self.q[r]), int(self.used[r]))
        out[:, V] = self.complete()
        return out

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        p, t, d = self.potential, self.potential.tables, self.potential.dfa
        return _check_tokens(
            self.q, self.used, np.asarray(rows, dtype=np.int64),
            np.asarray(tokens, dtype=np.int64), t.data, t.offsets, d.delta, d.cost,
            p.dist_end, d.accept, np.int64(p.token_cost), np.int64(p.budget),
            np.int64(p.min_used),
        )  # fmt: skip

    def advance(self, tokens: np.ndarray) -> AutomatonState:  # noqa: D102
        p, t, d = self.potential, self.potential.tables, self.potential.dfa
        tokens = np.asarray(tokens, dtype=np.int64)
        V = len(p.vocab)
        if tokens.shape != self.q.shape or ((tokens < 0) | (tokens >= V)).any():
            raise ValueError(
                f"`tokens` is {tokens!r}; advance needs one token index in 0..{V - 1} per row "
                f"({len(self.q)} rows; EOS cannot be advanced)."
            )
        q, u = _advance(
            self.q, self.used, tokens, t.data, t.offsets, d.delta, d.cost, np.int64(p.token_cost)
        )
        ctx = [c + [int(a)] for c, a in zip(self._contexts, tokens)]
        return AutomatonState(p, ctx, q, u)

    def select(self, rows: np.ndarray) -> AutomatonState:  # noqa: D102
        rows = np.asarray(rows, dtype=np.int64)
        return AutomatonState(
            self.potential, [list(self._contexts[r]) for r in rows], self.q[rows], self.used[rows]
        )
