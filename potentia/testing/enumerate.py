"""Exact enumeration of a sampler's random choices.

A sampler that routes every random choice through an injected ``draw(probs) -> index``
can be run once per *path* of choices; the path probabilities then give exact
expectations. :func:`sampler_expectations` uses this to compute, for a one-context state,

    E[ exp(log_w) · 1{token = a} ]     for every token a (EOS last)

which a properly weighted sampler must make equal to ``exp(target.logw_next(x)[a])``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from potentia.potentials.base import PotentialState
from potentia.samplers.base import TokenSampler

__all__ = ["enumerate_draws", "sampler_expectations", "assert_properly_weighted", "NoRandomness"]


class NoRandomness:
    """Stand-in for a ``numpy.random.Generator`` that fails on any use.

    Passed as ``rng`` while enumerating, so a sampler that bypasses ``draw`` is caught.
    """

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(
            f"the sampler used rng.{name} although a `draw` function was given: every random "
            "choice must go through `draw` for exact enumeration."
        )


def enumerate_draws(
    fn: Callable[[Callable[[np.ndarray], int]], Any], max_paths: int = 200_000
) -> list[tuple[float, Any]]:
    """Run ``fn(draw)`` once per path of random choices; return ``(probability, value)``.

    ``draw(probs)`` must receive probabilities summing to one (within 1e-9); every index
    with positive probability is explored. The probabilities of all paths sum to one.

    Raises:
        ValueError: if ``probs`` is not a probability vector or paths exceed ``max_paths``.
    """
    results: list[tuple[float, Any]] = []
    stack: list[tuple[int, ...]] = [()]
    while stack:
        prefix = stack.pop()
        path = list(prefix)
        state = {"pos": 0, "prob": 1.0}

        def draw(probs: np.ndarray, path=path, state=state) -> int:
            p = np.asarray(probs, dtype=float)
            s = p.sum()
            if p.ndim != 1 or (p < 0).any() or not np.isclose(s, 1.0, rtol=0, atol=1e-9):
                raise ValueError(
                    f"`draw` got {p!r} (sum {s!r}); it needs a probability vector summing to one."
                )
            pos = state["pos"]
            if pos < len(path):
                c = path[pos]
            else:
                nz = np.flatnonzero(p > 0)
                for alt in nz[:0:-1]:
                    stack.append(tuple(path) + (int(alt),))
                c = int(nz[0])
                path.append(c)
            state["pos"] = pos + 1
            state["prob"] *= p[c]
            return c

        value = fn(draw)
        results.append((state["prob"], value))
        if len(results) > max_paths:
            raise ValueError(f"more than `max_paths`={max_paths} random paths; shrink the problem.")
    return results


def sampler_expectations(sampler: TokenSampler, state: PotentialState) -> np.ndarray:
    """Exact ``E[exp(log_w) 1{token=a}]`` for every ``a``, for a one-row ``state``.

    Args:
        sampler: A sampler that routes all randomness through ``draw``.
        state: A batch state with exactly one context.
    """
    if len(state) != 1:
        raise ValueError(f"`state` has {len(state)} rows; enumeration needs exactly one.")
    V1 = len(sampler.target.vocab) + 1
    out = np.zeros(V1)

    def run(draw):
        res = sampler.sample(state, NoRandomness(), draw=draw)
        return int(res.tokens[0]), float(res.log_w[0])

    for prob, (tok, lw) in enumerate_draws(run):
        if lw > -np.inf:
            out[tok] += prob * np.exp(lw)
    return out


def assert_properly_weighted(
    sampler: TokenSampler, state: PotentialState, atol: float = 1e-9, rtol: float = 1e-9
) -> np.ndarray:
    """Assert ``E[exp(log_w) 1{token=a}] = exp(target.logw_next(x)[a])`` for every ``a``.

    The right-hand side is computed from the target's context API (not the state), so
    the check is independent of the sampler's own bookkeeping. Returns the expectations.
    """
    got = sampler_expectations(sampler, state)
    want = np.exp(sampler.target.logw_next(state.contexts[0]))
    bad = ~np.isclose(got, want, atol=atol, rtol=rtol)
    if bad.any():
        rows = "\n".join(
            f"  token {a}: E[w·1] = {got[a]:.12g}, target weight = {want[a]:.12g}"
            for a in np.flatnonzero(bad)[:10]
        )
        raise AssertionError(
            f"{type(sampler).__name__} is not properly weighted at context "
            f"{state.contexts[0]}:\n{rows}"
        )
    return got
