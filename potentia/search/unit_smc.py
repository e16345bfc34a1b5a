r"""SMC that resamples only at unit boundaries.

The particles advance token by token with :func:`potentia.smc.engine.step` (its own
resampling switched off: ``ess_threshold = 0``), so every weight is the token-level SMC
weight and the run targets exactly what token-level SMC targets (``sampler.target``
times the critic, restricted to ``max_tokens`` tokens). Resampling
(:func:`potentia.smc.engine.resample_particles`, ESS < ``ess_threshold · N``) is only
considered at a step where *every* running particle has just closed a unit.

With ``unit=k`` (k tokens) that is every k steps. With a delimiter the particles close
units at different steps; they are then resampled only when their boundaries coincide
(a particle does not wait for the others: that would need to merge batch states), which
is always exact, and is in between token-level SMC and importance sampling in variance.
A resampling decision made from the current particles is a valid adaptive schedule, so
Ẑ stays unbiased and the χ² tests of ``tests/search/test_unit_smc.py`` hold.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from potentia.potentials.base import Potential
from potentia.result import Result
from potentia.samplers.base import TokenSampler
from potentia.samplers.units import as_boundary
from potentia.smc.engine import (
    budget_out,
    finish,
    halt,
    init,
    make_kernel,
    resample_particles,
    step,
    stop,
    validate_budgets,
    validate_run_args,
)
from potentia.smc.resampling import Resampler

__all__ = ["unit_smc"]


def unit_smc(
    sampler: TokenSampler,
    unit: object,
    n_particles: int,
    max_tokens: int,
    rng: np.random.Generator | int | None = None,
    ess_threshold: float = 0.5,
    resampling: str | Resampler = "multinomial",
    critic: Potential | None = None,
    twist: Potential | None = None,
    on_max_tokens: str = "force_eos",
    time_limit: float | None = None,
    max_lm_calls: int | None = None,
) -> Result:
    r"""Run SMC whose resampling happens only at unit boundaries.

    Args:
        sampler: Proposes next tokens, properly weighted for ``sampler.target``.
        unit: A delimiter string (``"\n"``), a token count ``k``, a
            :class:`~potentia.samplers.units.Boundary`, or ``None`` (one unit per string:
            no resampling until every particle has finished, i.e. importance sampling).
        n_particles: Number of particles N.
        max_tokens: Largest number of tokens a particle may generate.
        rng: A ``numpy.random.Generator`` or a seed.
        ess_threshold: At a boundary, resample when ESS < ``ess_threshold · N``.
        resampling: A scheme name or ``(rng, weights, n) -> indices``.
        critic: A potential multiplied into the target, token by token.
        twist: A potential guiding resampling only (divided out at EOS).
        on_max_tokens: ``"force_eos"`` or ``"truncate"``.
        time_limit: Wall-clock budget in seconds (``None``: none).
        max_lm_calls: Budget of steps (batched LM calls); ``None``: none.

    Returns:
        A :class:`Result`; ``extra["unit"]`` names the boundary and ``resampled_at`` lists
        the steps (all at boundaries) where the particles were resampled.
    """
    validate_run_args(n_particles, max_tokens, ess_threshold, on_max_tokens)
    validate_budgets(time_limit, max_lm_calls)
    boundary = as_boundary(unit)
    kernel = make_kernel(sampler, critic, twist, ess_threshold, resampling)
    quiet = dataclasses.replace(kernel, ess_threshold=0.0)  # step never resamples
    vocab = sampler.target.vocab
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    t0 = time.perf_counter()
    p = init(kernel, n_particles)
    start = np.zeros(p.n, dtype=np.int64)  # where each particle's current unit began
    stopped_by = None
    while len(p.live) and p.step < max_tokens:
        stopped_by = budget_out(p.step, time.perf_counter() - t0, time_limit, max_lm_calls)
        if stopped_by:
            break
        step(quiet, p, rng)
        closed = [boundary.ends(vocab, p.contexts[i][start[i] :]) for i in p.live]
        for i, c in zip(p.live, closed):
            if c:
                start[i] = len(p.contexts[i])
        if len(p.live) and all(closed):
            ess = p.ess_history[-1]
            if ess > 0 and ess < kernel.ess_threshold * p.n:
                resample_particles(kernel, p, rng)
                start = np.array([len(c) for c in p.contexts], dtype=np.int64)
    if len(p.live) and stopped_by:  # a budget stop truncates (excluded from the posterior)
        halt(kernel, p)
    elif len(p.live):
        stop(kernel, p, on_max_tokens)
    res = finish(kernel, p, time.perf_counter() - t0, stopped_by)
    res.method = f"unit_smc[{type(sampler).__name__}, {boundary!r}]"
    res.extra["unit"] = repr(boundary)
    return res
