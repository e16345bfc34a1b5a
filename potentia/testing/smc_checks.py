"""Exact checks of SMC output: rejection-corrected draws and Ẑ checks.

SMC's final particle approximation is biased for finite N, but it is *properly weighted*:

    E[ Ẑ · p̂(s) ] = target(s)           for every string s,

where p̂ is the run's normalised particle measure. If Ẑ ≤ C surely, then drawing one
particle s ∼ p̂ per run and accepting it with probability Ẑ / C gives P(s, accepted) =
target(s) / C: accepted draws are *exact, independent* samples of the posterior. A χ² test
on them therefore has exactly its stated false-alarm rate, and tests precisely the identity
above (a biased resampler or a wrong weight breaks it).

For an LM times hard constraints with the direct sampler every incremental weight is a
next-token mass ≤ 1, so C = 1 (log C = 0) is a valid bound.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from potentia.result import Result

__all__ = ["smc_exact_draws"]


def smc_exact_draws(
    results: Iterable[Result],
    rng: np.random.Generator,
    log_bound: float = 0.0,
    key: str = "contexts",
) -> list:
    """Rejection-corrected draws from independent SMC runs (exact posterior samples).

    Args:
        results: Independent runs of the same problem.
        rng: Randomness for the draws and the acceptance tests.
        log_bound: log C with Ẑ ≤ C for every run.
        key: ``"contexts"`` (token tuples) or ``"texts"`` (decoded strings).

    Raises:
        AssertionError: if some run's Ẑ exceeds the bound (a bug, or a wrong bound).
    """
    out = []
    for r in results:
        if r.log_z == -np.inf:
            continue
        if r.log_z > log_bound + 1e-9:
            raise AssertionError(
                f"a run has log Ẑ = {r.log_z:.6g} above the bound log C = {log_bound:.6g}"
            )
        w = r.weights
        i = int(rng.choice(len(w), p=w / w.sum()))
        if rng.random() < np.exp(r.log_z - log_bound):
            out.append(tuple(r.contexts[i]) if key == "contexts" else r.texts[i])
    return out
