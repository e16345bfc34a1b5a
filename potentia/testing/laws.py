"""The potential laws of DESIGN §2 as assertions (call them in every potential's tests).

1. consistency: ``logw_next(x)[a] = prefix(xa) - prefix(x)``, ``[EOS] = complete(x) - prefix(x)``;
2. factorisation: ``complete(x) - prefix(ε) = Σ_t logw_next(x<t)[x_t] + logw_next(x)[EOS]``;
3. batch consistency: batch answers and batch states (``allowed`` masks included) equal
   one-at-a-time answers;
4. hard constraints: weights in {0, 1} and no prefix of a valid string has weight zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from potentia.potentials.base import Potential

__all__ = ["assert_potential_laws", "assert_logw_close"]


def assert_logw_close(got, want, atol: float = 1e-6, what: str = "") -> None:
    """Assert two log-weight arrays agree: equal ``-inf`` pattern, finite values within atol."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape} != {want.shape}")
    ninf_g, ninf_w = got == -np.inf, want == -np.inf
    if (ninf_g != ninf_w).any():
        i = np.flatnonzero((ninf_g != ninf_w).ravel())[0]
        raise AssertionError(
            f"{what}: zero-weight pattern differs at flat index {i}: "
            f"{got.ravel()[i]} vs {want.ravel()[i]}"
        )
    fin = ~ninf_g
    if fin.any():
        err = np.abs(got[fin] - want[fin]) / np.maximum(1.0, np.abs(want[fin]))
        if (err > atol).any():
            i = np.flatnonzero(fin.ravel())[np.argmax(err)]
            raise AssertionError(
                f"{what}: {got.ravel()[i]!r} != {want.ravel()[i]!r} at flat index {i} "
                f"(relative error {err.max():.3g} > {atol})"
            )


def assert_potential_laws(
    potential: Potential,
    contexts: Sequence[Sequence[int]],
    *,
    valid: Sequence[Sequence[int]] = (),
    tokens: Sequence[int] | None = None,
    atol: float = 1e-6,
    check_states: bool = True,
    rng: np.random.Generator | None = None,
) -> None:
    """Check the potential laws on the given contexts.

    Args:
        potential: The potential under test.
        contexts: Contexts to check laws 1–3 on (and the factorisation of each).
        valid: Strings known to be in a hard constraint's language (law 4).
        tokens: Tokens to check law 1 on; default all if the vocabulary has ≤ 2,000
            tokens, else 64 random ones plus the 16 of largest weight.
        atol: Relative/absolute tolerance on finite log weights.
        check_states: Also check that batch states (``state_from``, ``advance``,
            ``select``, ``logw_tokens``) agree with the context API.
        rng: Randomness for choosing tokens on large vocabularies.
    """
    rng = rng or np.random.default_rng(0)
    V = len(potential.vocab)
    name = type(potential).__name__
    contexts = [list(c) for c in contexts]
    vecs = []
    for x in contexts:
        lw = potential.logw_next(x)
        vecs.append(lw)
        p = potential.prefix(x)
        if p == -np.inf:
            if (lw > -np.inf).any():
                raise AssertionError(f"{name}: prefix({x}) = -inf but logw_next has finite entries")
            continue
        if tokens is not None:
            toks = np.asarray(tokens)
        elif V <= 2000:
            toks = np.arange(V)
        else:
            toks = np.unique(
                np.concatenate([rng.choice(V, 64, replace=False), np.argsort(-lw[:V])[:16]])
            )
        want = np.array([potential.prefix(x + [int(a)]) - p for a in toks])
        assert_logw_close(lw[toks], want, atol, f"{name} law 1 (consistency) at context {x}")
        assert_logw_close(
            lw[V], potential.complete(x) - p, atol, f"{name} law 1 (EOS) at context {x}"
        )
        if potential.hard:
            fin = np.concatenate([lw[toks], [lw[V]]])
            if (fin[fin > -np.inf] != 0).any():
                raise AssertionError(f"{name} is hard but has weights outside {{0, 1}} at {x}")
    # law 2: autoregressive factorisation
    p0 = potential.prefix([])
    for x in contexts:
        total = 0.0
        for t in range(len(x) + 1):
            lw = potential.logw_next(x[:t])
            total += lw[x[t]] if t < len(x) else lw[V]
            if total == -np.inf:
                break
        c = potential.complete(x)
        want = c - p0 if p0 > -np.inf else -np.inf
        assert_logw_close(total, want, atol, f"{name} law 2 (factorisation) of {x}")
    # law 3: batch consistency
    if contexts:
        assert_logw_close(
            potential.batch_logw_next(contexts),
            np.stack(vecs),
            atol,
            f"{name} law 3 batch_logw_next",
        )
        assert_logw_close(
            potential.batch_prefix(contexts),
            [potential.prefix(x) for x in contexts],
            atol,
            f"{name} law 3 batch_prefix",
        )
        assert_logw_close(
            potential.batch_complete(contexts),
            [potential.complete(x) for x in contexts],
            atol,
            f"{name} law 3 batch_complete",
        )
    if check_states:
        _check_states(potential, contexts, vecs, atol, rng)
    # law 4: soundness on valid strings
    for s in valid:
        s = list(s)
        if potential.complete(s) == -np.inf:
            raise AssertionError(f"{name} law 4: valid string {s} has complete weight zero")
        for t in range(len(s) + 1):
            if potential.prefix(s[:t]) == -np.inf:
                raise AssertionError(
                    f"{name} law 4 (soundness): prefix {s[:t]} of valid string {s} has weight zero"
                )


def _check_states(potential, contexts, vecs, atol, rng) -> None:
    name = type(potential).__name__
    by_len: dict[int, list[int]] = {}
    for i, x in enumerate(contexts):
        # only contexts whose every prefix is viable can be replayed through a state
        if potential.prefix(x) > -np.inf:
            by_len.setdefault(len(x), []).append(i)
    V = len(potential.vocab)
    for _, idx in sorted(by_len.items()):
        ctxs = [contexts[i] for i in idx]
        state = potential.state_from(ctxs)
        got = state.logw_next()
        assert_logw_close(got, np.stack([vecs[i] for i in idx]), atol, f"{name} state.logw_next")
        if not np.array_equal(state.allowed(), got > -np.inf):
            raise AssertionError(f"{name} state.allowed() disagrees with logw_next() > -inf")
        # single-token queries equal the matrix
        rows = np.arange(len(ctxs))
        toks = rng.integers(0, V + 1, size=len(ctxs))
        assert_logw_close(
            state.logw_tokens(rows, toks), got[rows, toks], atol, f"{name} state.logw_tokens"
        )
        # select with repeats (resampling) then answer again
        perm = rng.integers(0, len(ctxs), size=len(ctxs) + 1)
        sel = state.select(perm)
        if [list(c) for c in sel.contexts] != [ctxs[i] for i in perm]:
            raise AssertionError(f"{name} state.select reordered contexts wrongly")
        assert_logw_close(sel.logw_next(), got[perm], atol, f"{name} state.select().logw_next")
        # advance by an allowed token where there is one
        ok = [r for r in rows if (got[r, :V] > -np.inf).any()]
        if ok:
            sub = state.select(np.array(ok))
            adv_toks = np.array([int(np.flatnonzero(got[r, :V] > -np.inf)[0]) for r in ok])
            adv = sub.advance(adv_toks)
            want = potential.batch_logw_next([ctxs[r] + [int(a)] for r, a in zip(ok, adv_toks)])
            assert_logw_close(adv.logw_next(), want, atol, f"{name} state.advance().logw_next")
