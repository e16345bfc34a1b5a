"""Resampling schemes, all with one signature ``(rng, weights, n) -> indices``.

``weights`` are normalised probabilities (non-negative, summing to one); the result holds
``n`` ancestor indices such that E[#copies of i] = n·weights[i] (all four are unbiased).
Stratified, systematic and residual resampling have lower variance than multinomial.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["multinomial", "stratified", "systematic", "residual", "SCHEMES", "get_scheme"]

Resampler = Callable[[np.random.Generator, np.ndarray, int], np.ndarray]


def _search(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    c = np.cumsum(weights)
    c[-1] = 1.0  # guard against round-off
    idx = np.searchsorted(c, u, side="right")
    idx = np.minimum(idx, len(weights) - 1)
    # a zero-weight index can only be hit through round-off: move to the next positive one
    zero = weights[idx] == 0
    if zero.any():
        pos = np.flatnonzero(weights > 0)
        idx[zero] = pos[np.minimum(np.searchsorted(pos, idx[zero]), len(pos) - 1)]
    return idx.astype(np.int64)


def multinomial(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` independent draws from ``weights``."""
    return _search(weights, rng.random(n))


def stratified(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """One uniform draw in each of ``n`` equal strata of [0, 1)."""
    return _search(weights, (np.arange(n) + rng.random(n)) / n)


def systematic(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """One shared uniform offset for ``n`` equally spaced points."""
    return _search(weights, (np.arange(n) + rng.random()) / n)


def residual(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``floor(n·w_i)`` deterministic copies, the rest drawn multinomially."""
    counts = np.floor(n * weights).astype(np.int64)
    rest = n - int(counts.sum())
    idx = np.repeat(np.arange(len(weights)), counts)
    if rest > 0:
        resid = n * weights - counts
        resid = np.maximum(resid, 0)
        resid /= resid.sum()
        idx = np.concatenate([idx, _search(resid, rng.random(rest))])
    return idx


SCHEMES: dict[str, Resampler] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def get_scheme(name: str | Resampler) -> Resampler:
    """Return the resampler called ``name`` (or ``name`` itself if callable)."""
    if callable(name):
        return name
    if name not in SCHEMES:
        raise ValueError(
            f"`resampling` is {name!r}; choose one of {sorted(SCHEMES)} or pass a function "
            "(rng, weights, n) -> indices."
        )
    return SCHEMES[name]
