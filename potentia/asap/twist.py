r"""ASAp-guided SMC: a trie's θ as the twist, and a token sampler that feeds the trie.

θ(w) over-approximates EFG(w), the probability that prefix w still ends in the language;
EFG is the optimal twist for a hard constraint. Here a frozen copy ψ = θ_snapshot of the
trie twists the SMC target (resampling on P(w)·ψ(w)); the engine divides out at EOS
exactly the ψ each particle received, so the weights stay proper and log Ẑ unbiased.

:class:`TrieSampler` proposes from the same snapshot, q(t | w) ∝ P(t | w) 1[t allowed] ψ(w t),
with log weight ``log Σ_u P(u | w) ψ(w u) - log ψ(w t)``; the twisted increment is then
Σ_u P(u | w) ψ(w u) / ψ(w), which is 1 at every node the snapshot has expanded, so a fully
expanded trie gives equal weights and Ẑ = Z exactly. The sampler reads LM vectors from the
live trie (no LM call for a prefix any earlier run or sampler expanded) and records every
new expansion there, so the trie learns from the particles; the next run snapshots the
tightened θ. Tokens that the snapshot proves dead (ψ = 0) are never proposed: every string
through them has target weight zero, so the sequence-level target is unchanged.
"""

from __future__ import annotations

import numpy as np

from potentia.asap.trie import Node, ThetaSnapshot, Trie
from potentia.potentials.base import Potential, PotentialState, logsumexp
from potentia.result import Result
from potentia.samplers.base import Draw, SampleOut, TokenSampler
from potentia.smc.engine import smc

__all__ = ["ThetaTwist", "TrieSampler", "twisted_smc"]


class ThetaTwist(Potential):
    """The twist ψ(w) = θ(w) of a trie, frozen when the twist is built.

    ``prefix(w)`` is log θ_snapshot(w) (0 for prefixes the trie had not reached);
    ``complete = prefix`` (the SMC engine never uses a twist's completion weight).

    Args:
        trie: The trie to snapshot. Later changes of the trie do not affect this twist.
    """

    def __init__(self, trie: Trie) -> None:
        if not isinstance(trie, Trie):
            raise TypeError(f"`trie` is {type(trie).__name__}; pass a potentia Trie.")
        self.vocab = trie.vocab
        self.snapshot: ThetaSnapshot = trie.snapshot()

    def _walk(self, context: list[int]) -> tuple[int, float]:
        i, lt = 0, self.snapshot.root_logtheta
        for t in context:
            i, lt = self.snapshot.step(i, t)
            if lt == -np.inf:
                return -1, -np.inf
        return i, lt

    def _prefix(self, context: list[int]) -> float:
        return self._walk(context)[1]

    def _complete(self, context: list[int]) -> float:
        return self._walk(context)[1]

    def _logw_next(self, context: list[int]) -> np.ndarray:
        V = len(self.vocab)
        i, cur = self._walk(context)
        if cur == -np.inf:
            return np.full(V + 1, -np.inf)
        return _twist_row(self.snapshot, i, cur, V)

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        s = self.snapshot
        return _TwistState(
            self, [[] for _ in range(n)], np.zeros(n, np.int64), np.full(n, s.root_logtheta)
        )


def _twist_row(snap: ThetaSnapshot, i: int, cur: float, V: int) -> np.ndarray:
    known = snap.allowed.get(i) if i >= 0 else None
    if known is None:
        return np.zeros(V + 1)  # nothing known below: θ = 1 for every child
    toks, _, lt = known
    out = np.full(V + 1, -np.inf)
    out[toks] = lt - cur
    out[V] = 0.0  # complete = prefix
    return out


class _TwistState(PotentialState):
    def __init__(self, potential: ThetaTwist, contexts, ids: np.ndarray, lts: np.ndarray) -> None:
        self.potential, self._contexts, self.ids, self.lts = potential, contexts, ids, lts

    @property
    def contexts(self) -> list[list[int]]:
        return self._contexts

    def logw_next(self) -> np.ndarray:
        V = len(self.potential.vocab)
        snap = self.potential.snapshot
        rows = [
            _twist_row(snap, int(i), float(c), V) if c > -np.inf else np.full(V + 1, -np.inf)
            for i, c in zip(self.ids, self.lts)
        ]
        return np.array(rows) if rows else np.zeros((0, V + 1))

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        V = len(self.potential.vocab)
        out = np.empty(len(rows))
        for k, (r, t) in enumerate(zip(rows, tokens)):
            cur = self.lts[r]
            if cur == -np.inf:
                out[k] = -np.inf
            elif t == V:
                out[k] = 0.0
            else:
                out[k] = self.potential.snapshot.step(int(self.ids[r]), int(t))[1] - cur
        return out

    def advance(self, tokens: np.ndarray) -> _TwistState:
        snap = self.potential.snapshot
        ids, lts = self.ids.copy(), self.lts.copy()
        for r, t in enumerate(np.asarray(tokens, dtype=np.int64)):
            if lts[r] > -np.inf:
                ids[r], lts[r] = snap.step(int(ids[r]), int(t))
        new = [c + [int(t)] for c, t in zip(self._contexts, tokens)]
        return _TwistState(self.potential, new, ids, lts)

    def select(self, rows: np.ndarray) -> _TwistState:
        rows = np.asarray(rows, dtype=np.int64)
        return _TwistState(
            self.potential, [list(self._contexts[r]) for r in rows], self.ids[rows], self.lts[rows]
        )

    def prefix(self) -> np.ndarray:
        return self.lts.copy()


class TrieSampler(TokenSampler):
    """Proposes from P·ψ (ψ a frozen θ snapshot), reading and filling a live trie.

    Properly weighted for ``lm * constraint`` at every token whose continuations are not
    all proven dead by the snapshot (see the module docstring).

    Args:
        trie: The live trie (receives every new expansion).
        twist: The :class:`ThetaTwist` whose snapshot guides the proposal (default: a new
            snapshot of ``trie``). Pass the twist given to the SMC engine.
    """

    def __init__(self, trie: Trie, twist: ThetaTwist | None = None) -> None:
        if not isinstance(trie, Trie):
            raise TypeError(f"`trie` is {type(trie).__name__}; pass a potentia Trie.")
        self.trie = trie
        self.twist = twist if twist is not None else ThetaTwist(trie)
        self.target = trie.lm * trie.constraint

    def init_state(self, n: int) -> _TrieRows:  # noqa: D102
        t = self.trie
        return _TrieRows(
            self,
            t.lm.init_state(n),
            t.constraint.init_state(n),
            [t.root] * n,
            np.zeros(n, np.int64),
        )

    def sample(  # noqa: D102
        self, state: _TrieRows, rng: np.random.Generator, draw: Draw | None = None
    ) -> SampleOut:
        trie, snap = self.trie, self.twist.snapshot
        n = len(state.nodes)
        need = [r for r, nd in enumerate(state.nodes) if not nd.expanded]
        if need:
            sel = np.array(need, dtype=np.int64)
            lm_v = state.lm.select(sel).logw_next()
            c_v = state.c.select(sel).logw_next()
            for k, r in enumerate(need):
                trie.record(state.nodes[r], lm_v[k], c_v[k])
        tokens = np.zeros(n, dtype=np.int64)
        log_w = np.full(n, -np.inf)
        u = rng.random(n) if draw is None else None
        for r, nd in enumerate(state.nodes):
            known = snap.allowed.get(int(state.ids[r])) if state.ids[r] >= 0 else None
            lt = known[2] if known is not None else np.zeros(len(nd.tokens))
            w = nd.logp + lt
            tot = logsumexp(w) if len(w) else -np.inf
            if tot == -np.inf:
                tokens[r] = len(trie.vocab)
                continue
            p = np.exp(w - tot)
            if draw is None:
                c = np.cumsum(p)
                k = int(min(np.searchsorted(c, u[r] * c[-1], side="right"), len(c) - 1))
                while p[k] == 0:  # round-off landed on a zero entry
                    k -= 1
            else:
                k = int(draw(p))
            tokens[r] = nd.tokens[k]
            log_w[r] = tot - lt[k]
        return SampleOut(tokens=tokens, log_w=log_w, target_evals=len(need))


class _TrieRows(PotentialState):
    """Engine-facing state of :class:`TrieSampler`: LM and constraint rows plus trie nodes."""

    def __init__(self, sampler: TrieSampler, lm, c, nodes: list[Node], ids: np.ndarray) -> None:
        self.sampler, self.potential = sampler, sampler.target
        self.lm, self.c, self.nodes, self.ids = lm, c, nodes, ids

    @property
    def contexts(self) -> list[list[int]]:
        return self.lm.contexts

    def __len__(self) -> int:
        return len(self.nodes)

    def logw_next(self) -> np.ndarray:
        return self.lm.logw_next() + self.c.logw_next()

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        return self.lm.logw_tokens(rows, tokens) + self.c.logw_tokens(rows, tokens)

    def advance(self, tokens: np.ndarray) -> _TrieRows:
        tokens = np.asarray(tokens, dtype=np.int64)
        trie, snap = self.sampler.trie, self.sampler.twist.snapshot
        nodes = [trie.child(nd, int(t)) for nd, t in zip(self.nodes, tokens)]
        ids = np.array([snap.step(int(i), int(t))[0] for i, t in zip(self.ids, tokens)], np.int64)
        return _TrieRows(self.sampler, self.lm.advance(tokens), self.c.advance(tokens), nodes, ids)

    def select(self, rows: np.ndarray) -> _TrieRows:
        rows = np.asarray(rows, dtype=np.int64)
        return _TrieRows(
            self.sampler,
            self.lm.select(rows),
            self.c.select(rows),
            [self.nodes[r] for r in rows],
            self.ids[rows],
        )


def twisted_smc(
    trie: Trie,
    n_particles: int,
    rng: np.random.Generator | int | None = None,
    ess_threshold: float = 0.5,
    resampling: str = "multinomial",
) -> Result:
    """One SMC run twisted by a snapshot of ``trie``'s θ; the trie learns from the run.

    Args:
        trie: The θ trie of the (LM, prompt, constraint) pair; ``max_tokens`` is its own.
        n_particles: Number of particles.
        rng: Generator or seed.
        ess_threshold: Resample when ESS < threshold · N.
        resampling: A resampling scheme name.

    Returns:
        The engine's :class:`Result` (weights proper for ``lm * constraint``); ``extra``
        adds ``lm_calls`` (new trie expansions in this run) and ``log_theta_root`` (θ of
        the root in the snapshot used).
    """
    twist = ThetaTwist(trie)
    sampler = TrieSampler(trie, twist)
    before = trie.lm_calls
    out = smc(
        sampler,
        n_particles=n_particles,
        max_tokens=trie.max_tokens,
        rng=rng,
        ess_threshold=ess_threshold,
        resampling=resampling,
        twist=twist,
    )
    out.method = "smc[TrieSampler, θ twist]"
    out.extra["lm_calls"] = trie.lm_calls - before
    out.extra["log_theta_root"] = twist.snapshot.root_logtheta
    return out
