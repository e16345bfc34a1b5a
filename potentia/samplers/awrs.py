r"""Adaptive weighted rejection sampling (AWRS) of one next token under a hard constraint.

After Lipkin et al., "Fast Controlled Generation from Language Models with Adaptive
Weighted Rejection Sampling" (COLM 2025). The target's next-token weights are
``exp(ℓ_a) · c(a) · s(a)``: ℓ the LM's next-token log weights, c ∈ {0, 1} the hard
constraint, s an optional soft potential. The LM is the proposal; the constraint is only
evaluated on drawn tokens.

**Algorithm (one row).** Draw tokens x₁, x₂, … from the LM *without replacement*
(``x_i ∝ exp(ℓ)`` over the tokens not yet drawn) and test each against c. Let x_k be the
first accepted one and S_k the LM mass of the tokens still in the urn when x_k was drawn
(x_k included). Draw one more token y from the urn without x_k (the "coin"). Return x_k with

    w = S_k · s(x_k)           if c(y) = 1, or the urn held nothing but x_k
    w = exp(ℓ_{x_k}) · s(x_k)  if c(y) = 0

**Why it is properly weighted**, E[w · 1{token = a}] = exp(ℓ_a) c(a) s(a) for every a:
at an urn of mass S with allowed mass A, the coin gives E[w | x accepted] =
S·(A − e_x)/(S − e_x) + e_x·(S − A)/(S − e_x) = A (e_x = exp(ℓ_x)); so drawing a
directly contributes (e_a/S)·A, and drawing any rejected x first contributes
(Σ_rejected e_x / S) · e_a by induction on the smaller urn; the sum is e_a
(the induction's base, an urn with no allowed token, returns w = 0 correctly).
Every ``max_rejects`` rejections without an acceptance switch the row to the exact
step: the full constraint mask over the remaining tokens, a ∝ exp(ℓ_a) c(a), w = A — the
same identity holds at that node, so the cap keeps the weight proper.

**Numerics.** S is never formed as ``1 − rejected mass``: the urn keeps ``exp(ℓ − m)``
in blocks whose sums are recomputed exactly when a token leaves, so S has full relative
precision however much mass was removed, and when it falls below ``1e-200`` the urn is
rebuilt from ℓ around the remaining maximum (no underflow). A row dies only when no token
with positive LM probability is allowed.

**Batching.** One batched LM call (``state.parts[0].logw_next()``) for all rows, then
rounds: each row draws its next two candidates (a rejected first candidate makes the
second the next search draw; an accepted one makes it the coin, so no check is wasted),
and all rows' candidates go to the constraint in one ``logw_tokens`` call. Rows with equal
contexts (copies made by resampling) share verdicts, so a token is checked once per
distinct context and step.
"""

from __future__ import annotations

import math

import numpy as np

from potentia.potentials.base import (
    Potential,
    PotentialState,
    Vocabulary,
    as_potential,
    check_logw,
    logsumexp,
)
from potentia.potentials.ops import Product
from potentia.samplers.base import Draw, SampleOut, TokenSampler

__all__ = ["AWRS", "DEFAULT_MAX_REJECTS"]

#: Rejections after which a row switches to the exact allowed-token mask.
DEFAULT_MAX_REJECTS = 8

_REBASE_BELOW = 1e-200  # rebuild the urn around the remaining maximum below this mass


class _Urn:
    """The tokens of one row not drawn yet, with exact remaining mass.

    ``e`` holds ``exp(ℓ - m)`` (zero for drawn tokens) padded to ``nb · B`` entries;
    ``bs`` the per-block sums. Removing a token recomputes one block sum (O(B)).
    """

    __slots__ = ("logw", "m", "e", "bs", "B", "removed", "_cb")

    def __init__(self, logw: np.ndarray, m: float, e: np.ndarray, bs: np.ndarray, B: int):
        self.logw, self.m, self.e, self.bs, self.B = logw, m, e, bs, B
        self.removed: list[int] = []
        self._cb: np.ndarray | None = None

    def log_mass(self) -> float:
        """log of the LM mass left in the urn (``-inf`` when empty)."""
        s = float(self.bs.sum())
        if s < _REBASE_BELOW:
            s = self._rebase()
        return self.m + math.log(s) if s > 0 else -math.inf

    def _rebase(self) -> float:
        lw = self.logw.copy()
        lw[self.removed] = -np.inf
        m = float(lw.max())
        self.e[:] = 0.0
        if m == -np.inf:
            self.bs[:] = 0.0
            self._cb = None
            return 0.0
        V1 = len(lw)
        np.exp(lw - m, out=self.e[:V1])
        self.bs[:] = self.e.reshape(-1, self.B).sum(axis=1)
        self.m, self._cb = m, None
        return float(self.bs.sum())

    def remove(self, tok: int) -> None:
        self.removed.append(tok)
        self.e[tok] = 0.0
        b = tok // self.B
        self.bs[b] = self.e[b * self.B : (b + 1) * self.B].sum()
        self._cb = None

    def pick(self, rng: np.random.Generator | None, draw: Draw | None) -> int:
        """Draw a token ∝ its mass among the remaining ones; ``-1`` if none is left."""
        if self.log_mass() == -math.inf:
            return -1
        if draw is not None:
            p = self.e[: len(self.logw)]
            return int(draw(p / p.sum()))
        if self._cb is None:
            self._cb = np.cumsum(self.bs)
        cb, B = self._cb, self.B
        while True:  # a retry only follows a floating-point edge case; it keeps exactness
            u = rng.random() * cb[-1]
            b = int(np.searchsorted(cb, u, side="right"))
            if b >= len(cb):
                continue
            blk = self.e[b * B : (b + 1) * B]
            j = int(np.searchsorted(np.cumsum(blk), u - (cb[b - 1] if b else 0.0), side="right"))
            if j < B and blk[j] > 0:
                return b * B + j


class _Row:
    """Rejection-loop bookkeeping of one row."""

    __slots__ = ("urn", "seq", "log_s", "ok", "rejects", "token", "log_w", "done")

    def __init__(self, urn: _Urn) -> None:
        self.urn = urn
        self.seq: list[int] = []  # drawn tokens, in order
        self.log_s: list[float] = []  # urn mass when each was drawn
        self.ok: list[bool] = []  # constraint verdicts (a prefix of seq)
        self.rejects = 0
        self.token, self.log_w, self.done = -1, -math.inf, False


class AWRS(TokenSampler):
    """Adaptive weighted rejection sampling: exact proper weights, few constraint checks.

    For every row, returns a token and a log weight with
    ``E[exp(log_w) · 1{token = a}] = exp(target.logw_next(x)[a])`` for every ``a`` (see
    the module docstring for the algorithm and its one-line proof).

    Args:
        lm: The proposal: a language model potential (any potential with non-negative
            next-token weights; need not be normalised).
        constraint: A hard constraint (weights in {0, 1}) over the LM's vocabulary, or a
            byte-level one (lifted to the LM's vocabulary).
        soft: Optional soft potential multiplied in on the accepted token.
        max_rejects: Rejections after which a row uses the exact allowed-token mask
            (``None``: :data:`DEFAULT_MAX_REJECTS`; ``math.inf``: never).

    Attributes:
        target: ``lm * constraint`` (``* soft``): a :class:`Product` whose state has the
            LM's state first and the constraint's second.

    Raises:
        TypeError: if ``constraint`` is soft or an argument is not a potential.
        ValueError: if the vocabularies cannot be aligned or ``max_rejects`` < 1.
    """

    def __init__(
        self,
        lm: Potential,
        constraint: Potential,
        soft: Potential | None = None,
        max_rejects: int | float | None = None,
    ) -> None:
        lm = as_potential(lm, "lm")
        constraint = as_potential(constraint, "constraint")
        if not constraint.hard:
            raise TypeError(
                f"`constraint` ({constraint!r}) is a soft potential; AWRS needs a hard "
                "constraint (weights in {0, 1}). Pass soft potentials as `soft=...`, or use "
                "the direct sampler."
            )
        if max_rejects is None:
            max_rejects = DEFAULT_MAX_REJECTS
        if isinstance(max_rejects, bool) or not isinstance(max_rejects, int | float):
            raise TypeError(
                f"`max_rejects` is {max_rejects!r}; pass an int >= 1, math.inf, or None."
            )
        if not max_rejects >= 1:
            raise ValueError(
                f"`max_rejects` is {max_rejects!r}; it must be >= 1 (None for the default "
                f"{DEFAULT_MAX_REJECTS}, math.inf to never switch to the exact mask)."
            )
        self.max_rejects = max_rejects
        constraint = _on_vocab(constraint, lm.vocab, "constraint")
        groups = [lm, constraint] + ([] if soft is None else [as_potential(soft, "soft")])
        if soft is not None:
            groups[2] = _on_vocab(groups[2], lm.vocab, "soft")
        try:
            self.target = Product(*groups)
        except ValueError as err:
            raise ValueError(
                f"`constraint` or `soft` cannot be aligned with the LM's vocabulary: {err}"
            ) from None
        # Product flattens nested products: remember which parts came from which argument.
        sizes = [len(g.parts) if type(g) is Product else 1 for g in groups]
        bounds = np.cumsum([0, *sizes])
        self._lm_parts = range(bounds[0], bounds[1])
        self._c_parts = range(bounds[1], bounds[2])
        self._soft_parts = range(bounds[2], bounds[-1])
        self.lm, self.constraint, self.soft = lm, constraint, soft

    # ------------------------------------------------------------------------------
    def sample(  # noqa: D102
        self, state: PotentialState, rng: np.random.Generator, draw: Draw | None = None
    ) -> SampleOut:
        n = len(state)
        V1 = len(self.target.vocab) + 1
        logw = self._group_logw_next(state, self._lm_parts)
        m = logw.max(axis=1) if n else np.zeros(0)
        if not np.isfinite(m[m != -np.inf]).all():  # a row max is NaN or +inf iff a weight is
            check_logw(logw, f"{type(self).__name__}: the LM's logw_next")
        B = 1 << max(0, math.ceil(math.log2(math.sqrt(V1))))
        nb = -(-V1 // B)
        e = np.empty((n, nb * B))  # every entry written below (no zero-fill pass first)
        e[:, V1:] = 0.0
        alive = m > -np.inf
        if alive.all():
            np.subtract(logw, m[:, None], out=e[:, :V1])
            np.exp(e[:, :V1], out=e[:, :V1])
        else:
            e[:, :V1] = 0.0
            if alive.any():
                e[alive, :V1] = np.exp(logw[alive] - m[alive, None])
        bs = e.reshape(n, nb, B).sum(axis=2)
        rows = [_Row(_Urn(logw[r], float(m[r]), e[r], bs[r], B)) for r in range(n)]
        for r in np.flatnonzero(~alive):
            rows[r].done = True

        # Rows with equal contexts share constraint verdicts (a potential is a function of
        # the context): after resampling, particles are often copies of each other.
        ctx_id: dict[tuple[int, ...], int] = {}
        group = [ctx_id.setdefault(tuple(c), len(ctx_id)) for c in state.contexts]
        known: dict[tuple[int, int], bool] = {}
        checks = rounds = 0
        fallback: list[int] = []
        while True:
            q_rows, q_toks = [], []
            for r, row in enumerate(rows):
                if row.done:
                    continue
                for tok in self._next_draws(row, rng, draw):
                    q_rows.append(r)
                    q_toks.append(tok)
                if row.done and row.token == -2:  # cap reached: exact mask
                    fallback.append(r)
            if not q_rows:
                break
            rounds += 1
            keys = [(group[r], t) for r, t in zip(q_rows, q_toks)]
            ask = {}
            for k, r, t in zip(keys, q_rows, q_toks):
                if k not in known and k not in ask:
                    ask[k] = (r, t)
            if ask:
                rr, tt = zip(*ask.values())
                verdict = self._check(state, np.array(rr), np.array(tt))
                known.update(zip(ask, verdict.tolist()))
                checks += len(ask)
            for k, r in zip(keys, q_rows):
                rows[r].ok.append(known[k])
            for r in set(q_rows):
                self._settle(rows[r])

        tokens = np.array([row.token for row in rows], dtype=np.int64)
        tokens[tokens < 0] = V1 - 1  # dead rows (and fallback rows, set below)
        log_w = np.array([row.log_w for row in rows], dtype=float)
        masks = 0
        if fallback:
            masks = self._exact(state, logw, fallback, group, tokens, log_w, rng, draw)
        ok = np.flatnonzero(log_w > -np.inf)
        if len(self._soft_parts) and len(ok):
            log_w[ok] += self._group_tokens(state, self._soft_parts, ok, tokens[ok])
        return SampleOut(
            tokens=tokens,
            log_w=log_w,
            target_evals=masks,
            constraint_checks=checks,
            info={"rounds": rounds, "fallback_rows": len(fallback), "masks": masks},
        )

    # ------------------------------------------------------------------------------
    def _next_draws(self, row: _Row, rng, draw) -> list[int]:
        """The tokens to check next for ``row`` (may finish it without a check)."""
        urn = row.urn
        k = _first_true(row.ok)
        if k is None and row.rejects >= self.max_rejects:
            row.done, row.token = True, -2
            return []
        # the search needs two (candidate + coin-or-next); a found acceptance needs the coin
        want = 2 if k is None else 1
        out = []
        for _ in range(want):
            log_s = urn.log_mass()
            tok = urn.pick(rng, draw) if log_s > -math.inf else -1
            if tok < 0:
                break
            row.seq.append(tok)
            row.log_s.append(log_s)
            urn.remove(tok)
            out.append(tok)
        if not out:
            # urn empty: no coin possible (the accepted token was alone, w = S_k),
            # or nothing left to search (no allowed token: the row dies)
            row.done = True
            if k is not None:
                row.token, row.log_w = row.seq[k], row.log_s[k]
            else:
                row.token = row.seq[-1] if row.seq else -1
        return out

    def _settle(self, row: _Row) -> None:
        """Update ``row`` after a round of verdicts."""
        k = _first_true(row.ok)
        row.rejects = len(row.ok) if k is None else k
        if k is None:
            return
        if len(row.ok) > k + 1:  # the coin's verdict is known
            x = row.seq[k]
            row.token, row.done = x, True
            row.log_w = row.log_s[k] if row.ok[k + 1] else float(row.urn.logw[x])
        elif len(row.seq) == k + 1 and row.urn.log_mass() == -math.inf:
            row.token, row.log_w, row.done = row.seq[k], row.log_s[k], True

    def _exact(self, state, logw, fallback, group, tokens, log_w, rng, draw) -> int:
        """Exact step for rows that hit the rejection cap; returns the masks computed.

        One full constraint mask per distinct context; the row then draws among its
        allowed tokens only, a ∝ exp(ℓ_a), with weight A = Σ_allowed exp(ℓ_a).
        """
        first: dict[int, int] = {}
        for r in fallback:
            first.setdefault(group[r], r)
        mask = self._group_logw_next(state, self._c_parts, np.array(list(first.values())))
        which = {g: i for i, g in enumerate(first)}
        for r in fallback:
            allowed = np.flatnonzero(mask[which[group[r]]] > -np.inf)
            lt = logw[r, allowed]
            a = logsumexp(lt) if len(lt) else -np.inf
            if a == -np.inf:
                log_w[r], tokens[r] = -np.inf, logw.shape[1] - 1
                continue
            p = np.exp(lt - a)
            if draw is not None:
                full = np.zeros(logw.shape[1])
                full[allowed] = p / p.sum()
                tokens[r] = int(draw(full))
            else:
                c = np.cumsum(p)
                j = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(p) - 1)
                if p[j] == 0:  # floating-point edge: step back to a positive entry
                    j = int(np.flatnonzero(p[:j] > 0)[-1])
                tokens[r] = allowed[j]
            log_w[r] = a
        return len(first)

    # ------------------------------------------------------------------------------
    def _group_logw_next(
        self, state: PotentialState, parts: range, rows: np.ndarray | None = None
    ) -> np.ndarray:
        out = None
        for i in parts:
            s = state.parts[i] if rows is None else state.parts[i].select(rows)
            v = s.logw_next()
            m = self.target.maps[i]
            if m is not None:
                v = v[:, np.append(m, len(self.target.vocab))]
            out = v if out is None else out + v
        if out is None:
            return out
        out = np.asarray(out, dtype=float)
        if len(parts) == 1:  # no sum made: the part's own rows, read through a read-only view
            out = out.view()
            out.flags.writeable = False
        return out

    def _group_tokens(
        self, state: PotentialState, parts: range, rows: np.ndarray, tokens: np.ndarray
    ) -> np.ndarray:
        out = np.zeros(len(rows))
        for i in parts:
            out += state.parts[i].logw_tokens(rows, self.target.part_tokens(i, tokens))
        return out

    def _check(self, state: PotentialState, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        lw = self._group_tokens(state, self._c_parts, rows, tokens)
        if not np.isin(lw, (0.0, -np.inf)).all():
            bad = lw[~np.isin(lw, (0.0, -np.inf))][0]
            raise ValueError(
                f"`constraint` returned log weight {bad!r} for a token; a hard constraint "
                "must return 0 or -inf. Pass weighted potentials as `soft=...`."
            )
        return lw == 0.0

    def __repr__(self) -> str:
        return f"AWRS({self.lm!r}, {self.constraint!r}, max_rejects={self.max_rejects})"


def _first_true(flags: list[bool]) -> int | None:
    for i, f in enumerate(flags):
        if f:
            return i
    return None


def _on_vocab(p: Potential, vocab: Vocabulary, arg: str) -> Potential:
    """Lift a byte-level potential to ``vocab`` when needed."""
    if p.vocab != vocab and p.vocab == Vocabulary.bytes256() and vocab != p.vocab:
        try:
            return p.lift(vocab)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"`{arg}` ({p!r}) is byte-level and could not be lifted to the LM's "
                f"vocabulary {vocab!r}: {err}"
            ) from None
    return p
