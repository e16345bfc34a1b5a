"""The direct sampler: evaluate the whole next-token vector, sample exactly.

For one context x with next-token log weights ℓ = target.logw_next(x), draw
a ∼ exp(ℓ_a) / Σ_b exp(ℓ_b) and return ``log_w = logsumexp(ℓ)``. Then
E[exp(log_w) 1{token=a}] = p(a) Σ_b exp(ℓ_b) = exp(ℓ_a): properly weighted, with zero
variance given x (the locally optimal proposal). Cost: one full vector per row.
"""

from __future__ import annotations

import numpy as np

from potentia.potentials.base import Potential, PotentialState, as_potential, logsumexp
from potentia.samplers.base import Draw, SampleOut, TokenSampler

__all__ = ["DirectSampler"]


class DirectSampler(TokenSampler):
    """Exact next-token sampling from the target's full next-token vector.

    Args:
        target: The potential to sample from (usually ``lm * constraint``).
    """

    def __init__(self, target: Potential) -> None:
        self.target = as_potential(target, "target")

    def sample(  # noqa: D102
        self, state: PotentialState, rng: np.random.Generator, draw: Draw | None = None
    ) -> SampleOut:
        logw = state.logw_next()
        n, V1 = logw.shape
        log_tot = logsumexp(logw, axis=1) if n else np.zeros(0)
        tokens = np.full(n, V1 - 1, dtype=np.int64)
        alive = log_tot > -np.inf
        if draw is None:
            # Vectorised inverse-CDF draw: one uniform per row.
            probs = np.exp(logw[alive] - log_tot[alive, None])
            c = np.cumsum(probs, axis=1)
            u = rng.random(int(alive.sum()))[:, None] * c[:, -1:]
            idx = (c <= u).sum(axis=1)
            # never land on a zero-probability entry because of round-off
            idx = np.minimum(idx, V1 - 1)
            bad = probs[np.arange(len(idx)), idx] == 0
            if bad.any():
                idx[bad] = np.argmax(probs[bad], axis=1)
            tokens[alive] = idx
        else:
            for r in np.flatnonzero(alive):
                tokens[r] = draw(np.exp(logw[r] - log_tot[r]))
        return SampleOut(tokens=tokens, log_w=log_tot, target_evals=n)
